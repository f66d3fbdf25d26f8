"""``Provider.options``: the non-secret settings a provider type needs beyond its URL and key,
checked per type. :func:`options_clean` is the one check the services, the REST API and the
console forms go through; a type without an entry in ``OPTION_CHECKS`` takes no options.

Azure OpenAI (``azure``):

- ``api_version``: the ``api-version`` query of every request, ``YYYY-MM-DD`` or
  ``YYYY-MM-DD-preview`` (default :data:`AZURE_API_VERSION`, the newest GA version);
- ``auth``: ``"api-key"`` (default; the key goes in the ``api-key`` header), ``"entra"`` (the
  key is a Microsoft Entra ID access token sent as ``Authorization: Bearer``, as it is) or
  ``"entra-client"`` (the key is an app registration's client secret: Tollgate mints Entra ID
  tokens with it, providers/adapters/credentials.py);
- ``tenant_id``, ``client_id`` (required with ``auth: "entra-client"``, not otherwise): the
  directory (tenant) id or domain and the application (client) id; ``authority`` (optional, default
  ``https://login.microsoftonline.com``): the Entra ID host, e.g. ``https://login.microsoftonline.us``;
- ``deployments``: ``{deployment name: underlying model}``, e.g. ``{"my-gpt4o": "gpt-4o"}``.
  Azure routes by deployment name, so these names are the provider's models; the underlying
  model names its price (OpenAI's, from genai-prices) and its capabilities.

Google Gemini (``gemini``):

- ``auth``: ``"api-key"`` (a Gemini API key in ``x-goog-api-key``) or ``"vertex"`` (Vertex AI:
  the key is a service account's JSON key, with which Tollgate mints access tokens, or an OAuth2
  access token sent as it is, as ``Authorization: Bearer``); unset, the base URL decides (a Vertex
  AI URL names ``/projects/``);
- ``project`` and ``location`` (with ``auth: "vertex"`` only, both or neither): the Google Cloud
  project and region (or ``global``) whose Vertex AI root becomes the base URL when none is
  given (providers/base_urls.py :func:`~providers.base_urls.gemini_base_url`).

Amazon Bedrock (``bedrock``):

- ``region`` (required): the AWS region the runtime is called in and requests are signed for,
  e.g. ``us-east-1``; the base URL defaults to ``https://bedrock-runtime.{region}.amazonaws.com``;
- ``auth``: ``"sigv4"`` (default; the key is ``ACCESS_KEY_ID:SECRET_ACCESS_KEY`` or
  ``ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN`` and signs every request with SigV4) or
  ``"bearer"`` (the key is a Bedrock API key sent as ``Authorization: Bearer``);
- ``guardrail_identifier`` and ``guardrail_version`` (both or neither): a Bedrock guardrail (its id
  or ARN; a version number or ``DRAFT``) applied to every Converse call as ``guardrailConfig``;
  ``guardrail_trace`` (optional, with them): ``enabled``, ``disabled`` or ``enabled_full``.

OpenAI-compatible (``openai_compatible``): ``preset``, the service it was created as
(providers/presets.py), kept so that it keeps its preset's prices and catalog quirks behind any
base URL."""

import re
from collections.abc import Callable
from typing import Any

from core.errors import InvalidInput
from providers.adapters.credentials import ENTRA_AUTHORITY, ENTRA_CLIENT, CredentialError, token_url_check
from providers.base_urls import bedrock_region, vertex_base_url
from providers.models import ProviderType
from providers.presets import preset_get, preset_names

__all__ = ["AZURE_API_VERSION", "OPTION_CHECKS", "azure_deployments", "options_clean"]

AZURE_API_VERSION = "2024-10-21"  # GA (wire-formats-2 §4: the newest inference/stable version)
AZURE_AUTH = ("api-key", "entra", ENTRA_CLIENT)
ENTRA_FIELDS = ("tenant_id", "client_id", "authority")
# A directory id (a GUID) or one of its domains; an application id (a GUID).
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$")
_CLIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
GEMINI_AUTH = ("api-key", "vertex")
MAX_DEPLOYMENTS = 500
_API_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
# Azure's rule for a deployment name: letters, digits, '.', '_' and '-', at most 64.
_DEPLOYMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
BEDROCK_AUTH = ("sigv4", "bearer")
BEDROCK_GUARDRAIL_FIELDS = ("guardrail_identifier", "guardrail_version", "guardrail_trace")
GUARDRAIL_TRACE = ("enabled", "disabled", "enabled_full")
# Converse's GuardrailConfiguration patterns: an id or a guardrail ARN; a version number or DRAFT.
_GUARDRAIL_ID_RE = re.compile(r"^([a-z0-9]+|arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+)$")
_GUARDRAIL_VERSION_RE = re.compile(r"^([1-9][0-9]{0,7}|DRAFT)$")


def _azure(options: dict[str, Any]) -> dict[str, Any]:
    version = options.get("api_version", AZURE_API_VERSION)
    if not isinstance(version, str) or not _API_VERSION_RE.match(version.strip()):
        raise InvalidInput(
            f"options.api_version must be an Azure OpenAI api-version such as '{AZURE_API_VERSION}' (GA) or "
            f"'2025-04-01-preview' (got {version!r}).",
            field="options",
        )
    auth = options.get("auth", "api-key")
    if auth not in AZURE_AUTH:
        raise InvalidInput(
            f"options.auth must be 'api-key' (the key is sent in the api-key header), 'entra' (the key is a "
            f"Microsoft Entra ID token sent as Authorization: Bearer) or 'entra-client' (the key is a client "
            f"secret; set options.tenant_id and options.client_id); got {auth!r}.",
            field="options",
        )
    entra = _entra_client(options) if auth == ENTRA_CLIENT else {}
    if auth != ENTRA_CLIENT and any(options.get(f) is not None for f in ENTRA_FIELDS):
        raise InvalidInput("options.tenant_id, client_id and authority are for Entra ID client credentials: "
                           "set options.auth to 'entra-client' with them (or send them as null to remove them).",
                           field="options")
    deployments = options.get("deployments", {})
    if not isinstance(deployments, dict):
        raise InvalidInput(
            "options.deployments must be an object of deployment name to model, e.g. "
            '{"my-gpt4o": "gpt-4o", "my-embed": "text-embedding-3-small"}.',
            field="options",
        )
    if len(deployments) > MAX_DEPLOYMENTS:
        raise InvalidInput(f"options.deployments holds at most {MAX_DEPLOYMENTS} deployments.", field="options")
    for name, model in deployments.items():
        if not _DEPLOYMENT_RE.match(name):
            raise InvalidInput(
                f"options.deployments: '{name}' is not an Azure deployment name (1-64 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit).",
                field="options",
            )
        if not isinstance(model, str) or not _MODEL_RE.match(model):
            raise InvalidInput(
                f"options.deployments['{name}'] must be the deployed model's name, e.g. 'gpt-4o' (got {model!r}).",
                field="options",
            )
    return {"api_version": version.strip(), "auth": auth, **entra, "deployments": dict(sorted(deployments.items()))}


def _entra_client(options: dict[str, Any]) -> dict[str, str]:
    """tenant_id, client_id and authority of Entra ID client credentials, checked."""
    tenant, client = options.get("tenant_id"), options.get("client_id")
    if not isinstance(tenant, str) or not _TENANT_RE.match(tenant.strip()):
        raise InvalidInput("options.tenant_id is required with auth 'entra-client': the directory (tenant) id, "
                           "e.g. '72f988bf-86f1-41af-91ab-2d7cd011db47', or its domain, e.g. "
                           f"'contoso.onmicrosoft.com' (got {tenant!r}).", field="options")
    if not isinstance(client, str) or not _CLIENT_RE.match(client.strip()):
        raise InvalidInput("options.client_id is required with auth 'entra-client': the app registration's "
                           f"application (client) id (got {client!r}).", field="options")
    authority = options.get("authority")
    out = {"tenant_id": tenant.strip(), "client_id": client.strip()}
    if authority is not None and authority != "":
        try:
            out["authority"] = token_url_check(authority, what="options.authority").rstrip("/")
        except CredentialError as exc:
            raise InvalidInput(f"{exc} The default is {ENTRA_AUTHORITY}.", field="options") from None
    return out


def _gemini(options: dict[str, Any]) -> dict[str, Any]:
    auth = options.get("auth")
    if auth is not None and auth not in GEMINI_AUTH:
        raise InvalidInput(
            f"options.auth must be 'api-key' (a Gemini API key, sent in x-goog-api-key) or 'vertex' (Vertex AI: the "
            f"key is an OAuth2 access token sent as Authorization: Bearer); got {auth!r}.",
            field="options",
        )
    project, location = options.get("project"), options.get("location")
    if project is None and location is None:
        return {"auth": auth} if auth else {}
    if auth != "vertex":
        raise InvalidInput("options.project and options.location name a Vertex AI project: set options.auth to "
                           "'vertex' with them.", field="options")
    if not isinstance(project, str) or not isinstance(location, str) or not project.strip() or not location.strip():
        raise InvalidInput("Give both options.project and options.location (e.g. 'my-project' and 'us-central1'), "
                           "or neither and a Vertex AI base_url.", field="options")
    vertex_base_url(project, location)  # refuses names Google would not take
    return {"auth": auth, "project": project.strip().lower(), "location": location.strip().lower()}


def _bedrock(options: dict[str, Any]) -> dict[str, Any]:
    region = bedrock_region(options.get("region"))
    auth = options.get("auth", "sigv4")
    if auth not in BEDROCK_AUTH:
        raise InvalidInput(
            f"options.auth must be 'sigv4' (the api_key is ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN] and "
            f"signs each request) or 'bearer' (the api_key is a Bedrock API key); got {auth!r}.",
            field="options",
        )
    return {"region": region, "auth": auth, **_guardrail(options)}


def _guardrail(options: dict[str, Any]) -> dict[str, str]:
    """``guardrail_identifier`` and ``guardrail_version`` (both or neither), ``guardrail_trace``
    (with them only), checked as Converse's ``guardrailConfig`` takes them."""
    identifier, version, trace = (options.get(f) for f in BEDROCK_GUARDRAIL_FIELDS)
    if identifier is None and version is None:
        if trace is not None:
            raise InvalidInput("options.guardrail_trace goes with options.guardrail_identifier and "
                               "options.guardrail_version (to remove a guardrail, send all three as null).",
                               field="options")
        return {}
    if not isinstance(identifier, str) or len(identifier) > 2048 or not _GUARDRAIL_ID_RE.match(identifier.strip()):
        raise InvalidInput("options.guardrail_identifier must be a Bedrock guardrail's id (e.g. 'abcd1234efgh') or "
                           "ARN (arn:aws:bedrock:<region>:<account>:guardrail/<id>), given with "
                           f"options.guardrail_version (got {identifier!r}).", field="options")
    version = str(version) if isinstance(version, int) and not isinstance(version, bool) else version
    if not isinstance(version, str) or not _GUARDRAIL_VERSION_RE.match(version.strip()):
        raise InvalidInput("options.guardrail_version must be the guardrail's version number (e.g. '1') or 'DRAFT', "
                           f"given with options.guardrail_identifier (got {version!r}).", field="options")
    out = {"guardrail_identifier": identifier.strip(), "guardrail_version": version.strip()}
    if trace is not None:
        if trace not in GUARDRAIL_TRACE:
            raise InvalidInput(f"options.guardrail_trace must be one of {', '.join(GUARDRAIL_TRACE)} "
                               f"(got {trace!r}).", field="options")
        out["guardrail_trace"] = trace
    return out


def _openai_compatible(options: dict[str, Any]) -> dict[str, Any]:
    """``preset``: the OpenAI-compatible service it was created as (providers/presets.py)."""
    name = options.get("preset")
    if name is None:
        return {}
    if not isinstance(name, str) or preset_get(name) is None:
        raise InvalidInput(f"options.preset must be one of {', '.join(preset_names())} (got {name!r}).",
                           field="options")
    return {"preset": preset_get(name).name}


# Provider type -> its check: takes the options as sent (unknown keys already refused), returns
# them cleaned with the type's defaults filled in.
OPTION_CHECKS: dict[str, tuple[frozenset[str], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    ProviderType.AZURE: (frozenset({"api_version", "auth", "deployments", *ENTRA_FIELDS}), _azure),
    ProviderType.GEMINI: (frozenset({"auth", "project", "location"}), _gemini),
    ProviderType.OPENAI_COMPATIBLE: (frozenset({"preset"}), _openai_compatible),
    ProviderType.BEDROCK: (frozenset({"region", "auth", *BEDROCK_GUARDRAIL_FIELDS}), _bedrock),
}


def options_clean(provider_type: str, options: Any) -> dict[str, Any]:
    """``options`` checked for ``provider_type`` and returned with its defaults; InvalidInput
    (``field="options"``) saying what to fix otherwise. None means no options."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidInput("options must be a JSON object.", field="options")
    keys, check = OPTION_CHECKS.get(provider_type, (frozenset(), None))
    unknown = sorted(set(options) - keys)
    if unknown:
        allowed = ", ".join(sorted(keys)) if keys else "none"
        raise InvalidInput(
            f"Unknown option{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)} for provider "
            f"type '{provider_type}'; allowed: {allowed}.",
            field="options",
        )
    return check(options) if check is not None else {}


def azure_deployments(options: Any) -> dict[str, str]:
    """An Azure provider's ``{deployment: model}`` (empty when unset or malformed)."""
    deployments = options.get("deployments") if isinstance(options, dict) else None
    if not isinstance(deployments, dict):
        return {}
    return {k: v for k, v in deployments.items() if isinstance(k, str) and isinstance(v, str)}
