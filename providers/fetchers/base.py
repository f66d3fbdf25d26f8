"""What every catalog fetcher shares: the headers of a catalog request, and turning a
provider's error answer into words a tenant admin can act on."""

from typing import Any

from core.errors import TollgateError
from providers.adapters.credentials import TokenError
from providers.adapters.headers import upstream_headers
from providers.adapters.sigv4 import sigv4_headers
from providers.models import Provider, ProviderType
from providers.tokens import provider_access_token


class UpstreamError(TollgateError):
    """The provider answered, but not with what was asked for: a 502 for our caller."""

    status = 502
    type = "upstream_error"

    def __init__(self, message: str, *, upstream_status: int | None = None):
        super().__init__(message)
        self.upstream_status = upstream_status


def request_headers(provider: Provider) -> dict[str, str]:
    """Auth and attribution headers for a catalog request (a GET) to ``provider``: a key that
    mints access tokens sends one (providers/tokens.py), an UpstreamError saying why when none
    can be had."""
    auth = (provider.options or {}).get("auth", "")
    try:
        token = provider_access_token(provider)
    except TokenError as exc:
        raise UpstreamError(exc.message) from None
    return upstream_headers(provider.provider_type, provider.api_key if token is None else token,
                            provider.upstream_extra_headers(),
                            json_body=False, auth=auth if isinstance(auth, str) else "",
                            base_url=provider.base_url)


def request_signature(provider: Provider, method: str, url: str) -> dict[str, str]:
    """The per-request auth headers of a catalog request: a bedrock provider's SigV4 signature
    (over the headers of :func:`request_headers`, which the client sends as well); none for the
    other types, whose auth is in :func:`request_headers`."""
    options = provider.options or {}
    if provider.provider_type != ProviderType.BEDROCK or options.get("auth", "sigv4") != "sigv4":
        return {}
    try:
        return sigv4_headers(method=method, url=url, headers=request_headers(provider), body=b"",
                             api_key=provider.api_key, region=str(options.get("region") or ""))
    except ValueError as exc:
        raise UpstreamError(f"{provider.display_name or provider.name} has no usable AWS credentials: {exc}.") from None


def upstream_message(body: Any, snippet: str) -> str:
    """The human part of an error body in any of the four documented shapes."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("message"):
            return str(body["message"])
    return snippet.strip()[:200]


def raise_for_status(*, provider_name: str, url: str, status: int, body: Any, snippet: str) -> None:
    if 200 <= status < 300:
        return
    detail = upstream_message(body, snippet)
    if status in (401, 403):
        raise UpstreamError(
            f"{provider_name} rejected the API key ({status}: {detail}). Check the key.", upstream_status=status
        )
    if status == 404:
        raise UpstreamError(
            f"{url} answered 404 ({detail}). Is the base URL right? OpenAI-compatible servers "
            "usually end in /v1.",
            upstream_status=status,
        )
    if status == 429:
        raise UpstreamError(f"{provider_name} is rate limiting us (429: {detail}); try again later.",
                            upstream_status=status)
    raise UpstreamError(f"{provider_name} answered {status}: {detail}", upstream_status=status)


def require_list(body: Any, key: str, *, url: str) -> list:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, list):
        raise UpstreamError(f"{url} answered JSON without a '{key}' list; is this an LLM API?")
    return value
