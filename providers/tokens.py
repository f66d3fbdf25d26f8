"""Access tokens for catalog syncs and connection tests: the sync twin of gateway/tokens.py,
through the guarded httpx client (core/net.py). A provider whose key is a credential that mints
tokens (providers/adapters/credentials.py) gets one from the process's cache, or minted once
(threads asking at the same time wait for the same mint)."""

import logging
import threading

from core.net import NetError, fetch_json, guarded_client
from providers.adapters.credentials import TOKEN_HEADERS, TOKENS, CacheKey, TokenError, token_answer, token_source
from providers.models import Provider

log = logging.getLogger(__name__)
MAX_ANSWER_BYTES = 64_000

_locks: dict[CacheKey, threading.Lock] = {}
_locks_lock = threading.Lock()


def _key(provider: Provider, fingerprint: str) -> CacheKey:
    return (provider.pk or 0, fingerprint)


def provider_access_token(provider: Provider) -> str | None:
    """The access token to send for ``provider``, or None when its key is sent as it is.
    TokenError (its message names the provider and what the token endpoint said) when none can
    be had. An unsaved provider (a connection test of a form) mints without caching."""
    source = token_source(provider.provider_type, provider.api_key, provider.options or {}, provider.base_url)
    if source is None:
        return None
    key = _key(provider, source.fingerprint)
    if provider.pk and (token := TOKENS.get(key)):
        return token
    with _locks_lock:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if provider.pk and (token := TOKENS.get(key)):  # another thread minted it meanwhile
            return token
        name = provider.display_name or provider.name
        body = source.request_body()
        try:
            with guarded_client(timeout=provider.timeout_seconds, max_bytes=MAX_ANSWER_BYTES) as client:
                status, _, data, snippet = fetch_json(client, "POST", source.token_url, content=body,
                                                      headers=dict(TOKEN_HEADERS), max_redirects=0)
        except NetError as exc:
            raise TokenError("connection", f"Provider '{name}' could not get an access token from "
                                           f"{source.token_url}: {exc.message}") from None
        token, lifetime = token_answer(source, provider=name, status=status, body=data, snippet=snippet)
        if provider.pk:
            TOKENS.put(key, token, lifetime)
        log.info("minted an access token for provider %s (valid %.0f s)", name, lifetime)
        return token


def provider_token_refused(provider: Provider, token: str) -> None:
    """The provider answered 401 to ``token``: forget it, so the next request mints a new one."""
    source = token_source(provider.provider_type, provider.api_key, provider.options or {}, provider.base_url)
    if source is not None and provider.pk:
        TOKENS.drop(_key(provider, source.fingerprint), token)

