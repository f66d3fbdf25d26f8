"""A provider's base URL as a person types it: the provider type it suggests
(:func:`detect_provider_type`) and its canonical form (:func:`normalize_base_url`). Which
OpenAI-compatible service (preset) a URL names is providers/presets.py's :func:`~providers.presets.preset_for_url`.
No network access here; whether Tollgate may contact the URL is core.net's :func:`~core.net.check_url`."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from core.errors import InvalidInput
from providers.models import ProviderType
from providers.presets import PRESETS, Preset, url_parts

__all__ = ["DEFAULT_BASE_URLS", "bedrock_control_url", "bedrock_region", "bedrock_runtime_url",
           "detect_provider_type", "gemini_base_url", "normalize_base_url", "vertex_base_url"]


DEFAULT_BASE_URLS: dict[str, str] = {
    ProviderType.OPENAI: "https://api.openai.com/v1",
    ProviderType.ANTHROPIC: "https://api.anthropic.com",
    ProviderType.OPENROUTER: "https://openrouter.ai/api/v1",
    ProviderType.OLLAMA: "http://localhost:11434",
    ProviderType.GEMINI: "https://generativelanguage.googleapis.com/v1beta",
}
GEMINI_HOST = "generativelanguage.googleapis.com"
VERTEX_HOST_SUFFIX = "aiplatform.googleapis.com"  # {location}-aiplatform…, or aiplatform… for "global"

# bedrock-runtime.{region}.amazonaws.com (and its FIPS twin): the host names the region
_BEDROCK_HOST_RE = re.compile(r"^bedrock-runtime(-fips)?\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")

_OLLAMA_PORT = 11434
AZURE_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com")
# What people paste after an Azure resource's endpoint (the SDK's base_url, a deployment's URL):
# the adapter adds the /openai/... path itself, so the provider keeps the resource root.
_AZURE_PATH_RE = re.compile(r"/openai(/v1|/deployments(/[^/]*)?(/.*)?)?$", re.I)


_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")  # us-east-1, us-gov-west-1, ap-southeast-2


def bedrock_region(region: Any) -> str:
    """``region`` checked as an AWS region name (InvalidInput saying what to send otherwise)."""
    if region is None or region == "":
        raise InvalidInput(
            "options.region is required for an Amazon Bedrock provider: the AWS region to call and sign for, "
            'e.g. {"region": "us-east-1"}.',
            field="options",
        )
    if not isinstance(region, str) or not _REGION_RE.match(region.strip()):
        raise InvalidInput(f"options.region must be an AWS region such as 'us-east-1' or 'eu-central-1' "
                           f"(got {region!r}).", field="options")
    return region.strip()


def detect_provider_type(base_url: str) -> str:
    """Guess the :class:`~providers.models.ProviderType` value for ``base_url``.

    ``api.openai.com`` → openai, ``api.anthropic.com`` → anthropic, ``openrouter.ai`` or any
    subdomain → openrouter, ``*.openai.azure.com`` or ``*.cognitiveservices.azure.com`` → azure,
    ``bedrock-runtime[-fips].{region}.amazonaws.com`` → bedrock,
    ``generativelanguage.googleapis.com`` (the Gemini API, unless the path is its
    OpenAI-compatible ``/openai`` one) or ``[{location}-]aiplatform.googleapis.com`` (Vertex AI)
    → gemini, port 11434 or a path under ``/api`` → ollama, anything else
    (including an empty or unparseable URL) → openai_compatible. Case-insensitive; a missing
    scheme and trailing slashes are tolerated.
    """
    parts = url_parts(base_url)
    if parts is None:
        return ProviderType.OPENAI_COMPATIBLE.value
    host, port, path = parts
    if host == "api.openai.com":
        return ProviderType.OPENAI.value
    if host == "api.anthropic.com":
        return ProviderType.ANTHROPIC.value
    if host == "openrouter.ai" or host.endswith(".openrouter.ai"):
        return ProviderType.OPENROUTER.value
    if host.endswith(AZURE_HOST_SUFFIXES):
        return ProviderType.AZURE.value
    if _BEDROCK_HOST_RE.match(host):
        return ProviderType.BEDROCK.value
    if host == GEMINI_HOST:
        is_compat = "/openai" in path  # …/v1beta/openai: Google's Chat Completions endpoint
        return (ProviderType.OPENAI_COMPATIBLE if is_compat else ProviderType.GEMINI).value
    if host == VERTEX_HOST_SUFFIX or host.endswith("-" + VERTEX_HOST_SUFFIX):
        return ProviderType.GEMINI.value
    if port == _OLLAMA_PORT or path == "/api" or path.startswith("/api/"):
        return ProviderType.OLLAMA.value
    return ProviderType.OPENAI_COMPATIBLE.value


def normalize_base_url(base_url: str, provider_type: str, *, preset: Preset | None = None, region: str = "") -> str:
    """Validate ``base_url`` for ``provider_type`` and return it in canonical form.

    The scheme and host are lower-cased and trailing slashes removed. An empty URL gets the
    preset's base URL when one is given, else the provider type's public default (see
    :data:`DEFAULT_BASE_URLS`); openai_compatible has none and needs a URL. The mock provider
    never touches the network, so its URL is only trimmed. An Azure resource keeps its root
    only (``https://<resource>.openai.azure.com``): a pasted ``/openai``, ``/openai/v1`` or
    deployment path is cut off. A bedrock provider's default is its ``region``'s runtime
    endpoint (the region is required then), and an AWS runtime host must name that region.
    Raises :class:`~core.errors.InvalidInput` (``field="base_url"``) with a message that
    says what to fix. No DNS lookup happens here; :func:`core.net.check_url` does that.
    """
    if provider_type not in ProviderType.values:
        raise InvalidInput(
            f"Unknown provider type '{provider_type}'; use one of "
            f"{', '.join(ProviderType.values)}.",
            field="provider_type",
        )
    text = (base_url or "").strip()
    if provider_type == ProviderType.MOCK:
        return text.rstrip("/")
    if not text and provider_type == ProviderType.BEDROCK:
        return bedrock_runtime_url(bedrock_region(region))
    if not text:
        default = preset.base_url if preset is not None else DEFAULT_BASE_URLS.get(provider_type)
        if default is None and provider_type == ProviderType.AZURE:
            raise InvalidInput(
                "base_url is required for an Azure OpenAI provider; give your resource's endpoint, "
                "e.g. https://my-resource.openai.azure.com.",
                field="base_url",
            )
        if default is None:
            raise InvalidInput(
                "base_url is required for an OpenAI-compatible provider; give the API's root, "
                f"e.g. https://api.example.com/v1, or name a preset ({', '.join(PRESETS)}).",
                field="base_url",
            )
        return default

    example = "e.g. https://api.example.com/v1"
    if any(ch.isspace() for ch in text):
        raise InvalidInput(f"base_url must not contain spaces (got '{text}').", field="base_url")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise InvalidInput("base_url must not contain control characters.", field="base_url")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # "http://[::1" (unclosed bracket), "http://[zz]" (not an address)
        raise InvalidInput(
            f"base_url is not a valid URL ({exc}; got '{text}'), {example}; an IPv6 address goes "
            "in brackets: http://[2001:db8::1]:8000/v1.",
            field="base_url",
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            f"base_url must start with http:// or https:// (got '{text}'), {example}.",
            field="base_url",
        )
    if "@" in parts.netloc:
        raise InvalidInput(
            "base_url must not contain a user name or password; put the credential in the "
            "provider's API key instead.",
            field="base_url",
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise InvalidInput(
            f"base_url has an invalid port (got '{text}'); use a number from 1 to 65535.",
            field="base_url",
        ) from None
    if not host:
        raise InvalidInput(
            f"base_url has no host name (got '{text}'), {example}.", field="base_url"
        )
    if not _host_is_valid(parts.netloc, host):
        raise InvalidInput(
            f"base_url has an invalid host '{host}' (got '{text}'): use a host name, an IPv4 "
            f"address or an IPv6 address in brackets, {example}.",
            field="base_url",
        )
    if port == 0:
        raise InvalidInput(
            f"base_url has an invalid port (got '{text}'); use a number from 1 to 65535.",
            field="base_url",
        )
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise InvalidInput(
            f"base_url must not contain a query string or fragment (got '{text}'); give only "
            f"the API's root, {example}.",
            field="base_url",
        )
    path = parts.path.rstrip("/")
    if provider_type == ProviderType.AZURE:
        path = _AZURE_PATH_RE.sub("", path)
    if provider_type == ProviderType.GEMINI:
        path = _gemini_path(host.lower(), path)
    if provider_type == ProviderType.BEDROCK:
        _bedrock_host_check(host.lower(), region)
    return f"{scheme}://{parts.netloc.lower()}{path}"


def bedrock_runtime_url(region: str) -> str:
    """The Bedrock Runtime endpoint of an AWS region (a bedrock provider's default base URL)."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def bedrock_control_url(base_url: str) -> str:
    """Where a bedrock provider's catalog (ListFoundationModels) is asked: the control plane
    ``bedrock.{region}…`` beside an AWS runtime host ``bedrock-runtime.{region}…``; any other
    base URL (a proxy, a VPC endpoint, a test server) serves both."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if not _BEDROCK_HOST_RE.match(host):
        return base_url
    return base_url.replace("//bedrock-runtime", "//bedrock", 1)


def _bedrock_host_check(host: str, region: str) -> None:
    match = _BEDROCK_HOST_RE.match(host)
    if match and region and match.group(2) != region:
        raise InvalidInput(
            f"base_url is Bedrock's endpoint in {match.group(2)}, but options.region is {region}: requests are "
            "signed for the region, so they must agree (leave base_url empty to use the region's endpoint).",
            field="base_url",
        )


_VERTEX_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def vertex_base_url(project: str, location: str, *, version: str = "v1") -> str:
    """Vertex AI's publisher root for Google's models in ``project`` at ``location``
    (``global`` is served by the host without a region), as a gemini provider's base URL:
    what a Vertex provider's ``options.project`` / ``options.location`` stand for."""
    project, location = (project or "").strip().lower(), (location or "").strip().lower()
    for value, field in ((project, "project"), (location, "location")):
        if not _VERTEX_NAME.match(value):
            raise InvalidInput(f"A Vertex AI {field} is lower-case letters, digits and hyphens (got '{value}').",
                               field=f"options.{field}")
    host = VERTEX_HOST_SUFFIX if location == "global" else f"{location}-{VERTEX_HOST_SUFFIX}"
    return f"https://{host}/{version}/projects/{project}/locations/{location}/publishers/google"


def gemini_base_url(base_url: str, options: dict | None) -> str:
    """A gemini provider's base URL, normalized: the one given, else, with ``options.auth``
    ``"vertex"``, the Vertex AI root that ``options.project`` / ``options.location`` name, else
    the Gemini API's. With ``auth: "vertex"`` the URL must be a Vertex AI one (it names
    ``/projects/``): a Gemini API URL would get the bearer token it cannot take."""
    options = options or {}
    text = (base_url or "").strip()
    vertex = options.get("auth") == "vertex"
    if not text and vertex:
        if not (options.get("project") and options.get("location")):
            raise InvalidInput(
                "A Vertex AI provider (options.auth 'vertex') needs options.project and options.location, or a "
                "base_url naming them: https://{location}-aiplatform.googleapis.com/v1/projects/{project}/"
                "locations/{location}/publishers/google.",
                field="options",
            )
        text = vertex_base_url(str(options["project"]), str(options["location"]))
    url = normalize_base_url(text, ProviderType.GEMINI)
    if vertex and "/projects/" not in url:
        raise InvalidInput(
            f"options.auth is 'vertex' but {url} is not a Vertex AI URL; leave base_url empty to build it from "
            "options.project and options.location, or set options.auth to 'api-key' for the Gemini API.",
            field="base_url",
        )
    return url


def _gemini_path(host: str, path: str) -> str:
    """The Gemini API's root is its version (``/v1beta`` when only the host is given); Vertex
    AI's is the publisher's path, which names the project and location, so it must be given."""
    if host == GEMINI_HOST and not path:
        return "/v1beta"
    if (host == VERTEX_HOST_SUFFIX or host.endswith("-" + VERTEX_HOST_SUFFIX)) and "/projects/" not in path:
        raise InvalidInput(
            "A Vertex AI base_url names the project and location: https://{location}-aiplatform"
            ".googleapis.com/v1/projects/{project}/locations/{location}/publishers/google.",
            field="base_url",
        )
    return path


_HOST_NAME_RE = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$")
_NETLOC_RE = re.compile(r"^(\[[^\[\]]+\]|[^\[\]:]+)(:\d*)?$")


def _host_is_valid(netloc: str, host: str) -> bool:
    """Whether ``netloc`` is exactly ``host[:port]`` (``[address][:port]`` for IPv6) and the
    host a name (IDNA allowed) or an IP address: what every HTTP client here can connect to."""
    if not _NETLOC_RE.match(netloc):
        return False  # "[::1]x:80", "a]b"
    if netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return False  # "[v1.fe]" (IPvFuture)
        return True
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return bool(_HOST_NAME_RE.match(ascii_host.lower()))
