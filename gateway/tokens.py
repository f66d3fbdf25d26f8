"""Access tokens for the data plane: a deployment whose key is a credential that mints them
(Azure Entra ID client credentials, a Google service-account JSON key:
providers/adapters/credentials.py) gets one before each attempt, from the process's cache or
minted through the guarded session. One mint per provider at a time: concurrent requests wait
for the same answer (a hundred requests, one token request)."""

import asyncio
import logging
from dataclasses import replace

import aiohttp
import orjson

from gateway.upstream import RefusedAddress, Upstream, attempt_timeout
from providers.adapters.credentials import (
    TOKEN_HEADERS,
    TOKENS,
    CacheKey,
    TokenError,
    TokenSource,
    token_answer,
    token_source,
)
from providers.adapters.types import Deployment, UpstreamFailure

log = logging.getLogger(__name__)
MAX_ANSWER_BYTES = 64_000


def _source(d: Deployment) -> TokenSource | None:
    return token_source(d.provider_type, d.api_key, d.options, d.base_url)


class Tokens:
    def __init__(self, session: Upstream):
        self.session = session
        self._minting: dict[CacheKey, asyncio.Task] = {}

    async def authorise(self, d: Deployment) -> Deployment:
        """``d`` with the access token to send, when its key mints them; else ``d`` itself.
        UpstreamFailure when no token can be had (its message names the provider and what the
        token endpoint said)."""
        source = _source(d)
        if source is None:
            return d
        key = (d.provider_id, source.fingerprint)
        token = TOKENS.get(key)
        if token is None:
            task = self._minting.get(key)
            if task is None:
                task = asyncio.ensure_future(self._mint(key, source, d))
                self._minting[key] = task
                task.add_done_callback(lambda t: self._done(key, t))
            try:
                token = await asyncio.shield(task)
            except TokenError as exc:
                raise UpstreamFailure(exc.kind, exc.message, retryable=exc.retryable) from None
        return replace(d, access_token=token)

    def _done(self, key: CacheKey, task: asyncio.Task) -> None:
        if self._minting.get(key) is task:
            del self._minting[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    def refused(self, d: Deployment, failure: UpstreamFailure) -> UpstreamFailure:
        """``failure`` as the engine should take it. The upstream answered 401 to a minted token
        (revoked, or the credential rotated): the token is forgotten and the failure is worth
        another try, which mints a new one."""
        if failure.status != 401 or not d.access_token:
            return failure
        source = _source(d)
        if source is None:
            return failure
        TOKENS.drop((d.provider_id, source.fingerprint), d.access_token)
        log.info("provider %s refused its access token; minting a new one", d.provider_name)
        return replace(failure, retryable=True)

    async def _mint(self, key: CacheKey, source: TokenSource, d: Deployment) -> str:
        body = source.request_body()
        where = f"Provider '{d.provider_name}' could not get an access token from {source.token_url}"
        try:
            async with self.session.request("POST", source.token_url, data=body, headers=dict(TOKEN_HEADERS),
                                            timeout=attempt_timeout(d.timeout, stream=False)) as resp:
                status = resp.status
                raw = b""
                async for chunk in resp.content.iter_any():  # read() gives what has arrived, not the whole answer
                    raw += chunk
                    if len(raw) >= MAX_ANSWER_BYTES:
                        raw = raw[:MAX_ANSWER_BYTES]
                        break
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise TokenError("timeout", f"{where}: no answer within {d.timeout:g} s.") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                raise TokenError("refused_address", f"{where}: not contacted ({exc.os_error.message}).") from None
            raise TokenError("connection", f"{where}: it is unreachable ({exc.os_error.strerror or exc}).") from None
        except aiohttp.ClientError as exc:
            raise TokenError("connection", f"{where}: the request failed ({type(exc).__name__}).") from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        token, lifetime = token_answer(source, provider=d.provider_name, status=status, body=data,
                                       snippet=raw[:400].decode("utf-8", "replace"))
        TOKENS.put(key, token, lifetime)
        log.info("minted an access token for provider %s (valid %.0f s)", d.provider_name, lifetime)
        return token
