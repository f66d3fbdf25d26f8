"""The data plane's shared vocabulary: what a request is routed to, what an adapter must do,
and what comes back. Adapters (providers/adapters/) translate between the OpenAI shape that
clients speak and each provider's wire format; the engine (gateway/) does routing,
limits, retries and accounting and never looks inside a wire format itself. Plain data only:
nothing here imports Django or another app (billing prices and bounds a ``Usage``)."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Deployment:
    """One model on one provider, as the engine calls it."""

    provider_id: int
    provider_name: str
    provider_type: str  # a ProviderType value, the key of providers.adapters.registry.ADAPTERS
    base_url: str  # normalised, no trailing slash (e.g. http://host/v1 for OpenAI-style)
    api_key: str
    extra_headers: tuple[tuple[str, str], ...]  # sent last (Provider.upstream_extra_headers)
    provider_model_id: int
    model_id: str  # as the provider knows it
    timeout: float
    max_retries: int
    # USD per million tokens; None = unknown
    input_price: Decimal | None
    output_price: Decimal | None
    cached_input_price: Decimal | None
    cache_write_price: Decimal | None = None
    mode: str = "chat"  # or "embedding"
    context_length: int | None = None  # from the catalog, when the provider tells
    # The provider's string-valued options (Provider.options), e.g. Azure's api_version and auth.
    options: tuple[tuple[str, str], ...] = ()
    # The access token the engine minted for this request when the key is a credential that mints
    # them (providers/adapters/credentials.py); sent instead of the key.
    access_token: str = ""

    def option(self, name: str, default: str = "") -> str:
        for key, value in self.options:
            if key == name:
                return value
        return default

    @property
    def public_id(self) -> str:
        return f"{self.provider_name}:{self.model_id}"


def output_limit(body: dict[str, Any]) -> int | None:
    """The output-token limit a chat request sets, as every adapter sends it upstream and as
    the budget reservation counts it: ``max_completion_tokens`` (OpenAI's current name) when it
    is a positive integer, else ``max_tokens``; None when neither is."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Usage:
    """Tokens as the provider reported them (or as estimated when it did not), and the cost it
    reported. ``billing.pricing.usage_bounded`` cuts them to what a ledger row holds;
    ``clamped`` says a number had to be cut."""

    input_tokens: int = 0  # all prompt tokens, cached ones included (OpenAI's prompt_tokens)
    cached_input_tokens: int = 0  # read from the provider's prompt cache
    cache_write_tokens: int = 0  # written to the provider's prompt cache (Anthropic)
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those kept an hour (Anthropic's dearer tier)
    output_tokens: int = 0  # all completion tokens, reasoning included
    reasoning_tokens: int = 0
    provider_cost: Decimal | None = None  # OpenRouter's usage.cost, kept beside ours
    estimated: bool = False  # True when counted by us because the provider sent none
    clamped: bool = False  # True when a reported number was out of range and was cut to fit


@dataclass(slots=True)
class ChatResult:
    """A complete (non-streamed) answer, already in the OpenAI chat.completion shape."""

    body: bytes  # the JSON to send to the client
    usage: Usage


@dataclass(slots=True)
class UpstreamFailure(Exception):
    """An upstream answer or transport failure, classified for the retry logic."""

    kind: str  # rate_limit, server_error, timeout, connection, auth, bad_request, not_found, quota, bad_response
    # … or redirect (a 3xx: never followed), refused_address (the address policy forbade connecting),
    # context_window (the prompt does not fit the model), content_policy (refused by the provider's
    # safety system): see failures.error_class
    message: str  # words for the client; never contains a secret
    status: int | None = None  # the upstream HTTP status, if any
    retryable: bool = False  # 429 (not quota), 5xx, timeout, connection error
    retry_after: float | None = None  # seconds, from retry-after / retry-after-ms

    def __str__(self) -> str:
        return self.message


class StreamTranslator(Protocol):
    """Turns an upstream byte stream into OpenAI ``chat.completion.chunk`` SSE events.

    ``feed`` takes raw bytes as they arrive (split anywhere, even mid-line) and returns zero or
    more complete SSE events, each ``b"data: {...}\\n\\n"``, in the OpenAI chunk shape with
    ``id``, ``object``, ``created``, ``model`` set. ``finish`` is called once at the end of the
    upstream body and returns any last events; it never emits ``data: [DONE]`` and never
    emits a usage chunk (the engine adds those). After the stream, ``usage`` holds what the
    provider reported (``None`` if it reported nothing) and ``text_chars`` counts the
    characters of content/tool-call arguments relayed, for estimates. An upstream error event
    inside the stream raises ``UpstreamFailure``."""

    usage: Usage | None
    text_chars: int
    finish_reason: str | None

    def feed(self, data: bytes) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...
