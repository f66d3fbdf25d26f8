"""The headers of a request to a provider: content negotiation, the user agent, auth in the
provider type's style, then the provider's own extra headers (which win)."""

from collections.abc import Iterable

from providers.adapters.credentials import ENTRA_CLIENT, is_vertex, token_source
from providers.adapters.types import Deployment

__all__ = ["ANTHROPIC_VERSION", "USER_AGENT", "deployment_headers", "is_vertex", "upstream_headers"]

ANTHROPIC_VERSION = "2023-06-01"
USER_AGENT = "Tollgate/1.0"


def upstream_headers(kind: str, api_key: str, extra_headers: Iterable[tuple[str, str]], *,
                     accept: str = "application/json", json_body: bool = True, auth: str = "",
                     base_url: str = "") -> dict[str, str]:
    """Auth headers for a provider of type ``kind`` (a provider type string; Azure's key goes in
    ``api-key`` unless ``auth`` is ``"entra"`` or ``"entra-client"``, whose token is a Bearer one;
    Bedrock's is a Bearer one with ``auth`` ``"bearer"``, else none: its requests are signed with SigV4 afterwards), its
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
    elif kind == "azure" and auth not in ("entra", ENTRA_CLIENT):
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
    """The headers of a request to ``deployment`` (a JSON body). A credential that mints tokens
    (providers/adapters/credentials.py) sends the token the engine minted for the request, never
    the credential itself: none minted, no Authorization at all."""
    key = deployment.api_key
    if token_source(deployment.provider_type, key, deployment.options, deployment.base_url) is not None:
        key = deployment.access_token
    return upstream_headers(deployment.provider_type, key, deployment.extra_headers, accept=accept,
                            auth=deployment.option("auth"), base_url=deployment.base_url)
