"""Token usage on the wire: reading counts out of JSON, the OpenAI ``usage`` object both ways,
and the estimate used when a provider reports nothing."""

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from orjson import dumps

from providers.adapters.types import Usage


def as_int(value: Any) -> int:
    """A token count from JSON: ints as they are, floats truncated, anything else 0."""
    if type(value) is int:
        return value if value > 0 else 0
    if isinstance(value, float) and math.isfinite(value) and value > 0:
        return int(value)
    return 0


def as_decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def usage_from_openai(u: Any, *, with_cost: bool = False) -> Usage | None:
    """``Usage`` from an OpenAI-shaped usage object (``None`` if it is not one)."""
    if not isinstance(u, dict):
        return None
    prompt_details = u.get("prompt_tokens_details")
    completion_details = u.get("completion_tokens_details")
    usage = Usage(input_tokens=as_int(u.get("prompt_tokens")), output_tokens=as_int(u.get("completion_tokens")))
    if isinstance(prompt_details, dict):
        usage.cached_input_tokens = as_int(prompt_details.get("cached_tokens"))
        usage.cache_write_tokens = as_int(prompt_details.get("cache_write_tokens"))
    if isinstance(completion_details, dict):
        usage.reasoning_tokens = as_int(completion_details.get("reasoning_tokens"))
    if with_cost:
        usage.provider_cost = as_decimal(u.get("cost"))
    return usage


def usage_to_openai(usage: Usage, *, cache_known: bool = False) -> dict[str, Any]:
    """The OpenAI ``usage`` object for ``usage``. ``prompt_tokens_details`` is included when
    the provider reports cache counts (``cache_known``) or any are non-zero;
    ``completion_tokens_details`` when reasoning tokens were reported."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if cache_known or usage.cached_input_tokens or usage.cache_write_tokens:
        details: dict[str, int] = {"cached_tokens": usage.cached_input_tokens}
        if usage.cache_write_tokens:
            details["cache_write_tokens"] = usage.cache_write_tokens  # OpenRouter's name
        out["prompt_tokens_details"] = details
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def estimate_tokens(chars: int) -> int:
    """Rough token count for ``chars`` characters of text (4 per token, at least 1)."""
    return max(1, -(-chars // 4))


def estimate_input_tokens(raw: Any) -> int:
    """The tokens of an embeddings ``input`` (a text, a list of texts, token ids or lists of
    them) when the upstream counts none: a token array counts its ids, a text
    ``estimate_tokens`` of its characters (at least 1 each)."""
    one = isinstance(raw, str) or (isinstance(raw, list) and bool(raw) and isinstance(raw[0], int))
    items = [raw] if one else (raw if isinstance(raw, list) else [])
    return sum(len(item) if isinstance(item, list) else
               estimate_tokens(len(item if isinstance(item, str) else dumps(item).decode())) for item in items)
