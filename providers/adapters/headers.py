"""The headers of a request to a provider: content negotiation, the user agent, auth in the
provider type's style, then the provider's own extra headers (which win)."""

from collections.abc import Iterable

from providers.adapters.types import Deployment

ANTHROPIC_VERSION = "2023-06-01"
USER_AGENT = "Tollgate/1.0"


def is_vertex(base_url: str) -> bool:
    """Whether a gemini provider's base URL is Vertex AI's (``…/projects/{p}/locations/{l}/…``,
    OAuth bearer token) rather than the Gemini API's (``x-goog-api-key``)."""
    return "/projects/" in base_url


def upstream_headers(kind: str, api_key: str, extra_headers: Iterable[tuple[str, str]], *,
                     accept: str = "application/json", json_body: bool = True, auth: str = "",
                     base_url: str = "") -> dict[str, str]:
    """Auth headers for a provider of type ``kind`` (a provider type string; Azure's key goes in
    ``api-key`` unless ``auth`` is ``"entra"``, whose token is a Bearer one; Bedrock's is a Bearer
one with ``auth`` ``"bearer"``, else none: its requests are signed with SigV4 afterwards), its
    ``extra_headers`` ((name, value) pairs; the caller puts OpenRouter's attribution there) last
    so they can override. The one place both the data plane (a Deployment) and catalog syncs
    build them. ``base_url`` tells the Gemini API (an API key) from Vertex AI (a bearer token), as
    does a gemini provider's ``auth`` ``"vertex"``."""
    headers = {"Accept": accept, "User-Agent": USER_AGENT}
    if json_body:
        headers["Content-Type"] = "application/json"
    if kind == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if api_key:
            headers["x-api-key"] = api_key
    elif kind == "azure" and auth != "entra":
        if api_key:
            headers["api-key"] = api_key
    elif kind == "gemini" and not is_vertex(base_url) and auth != "vertex":
        if api_key:
            headers["x-goog-api-key"] = api_key
    elif kind == "bedrock" and auth != "bearer":
        pass  # an access key pair signs each request (SigV4: providers/adapters/sigv4.py), not a header
    elif api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    for name, value in extra_headers:
        headers[name] = value
    return headers


def deployment_headers(deployment: Deployment, *, accept: str = "application/json") -> dict[str, str]:
    """The headers of a request to ``deployment`` (a JSON body)."""
    return upstream_headers(deployment.provider_type, deployment.api_key, deployment.extra_headers, accept=accept,
                            auth=deployment.option("auth"), base_url=deployment.base_url)
