"""Usage on the wire (providers/adapters/usage.py): the OpenAI usage object both ways, and the
estimate when a provider reports nothing."""

from __future__ import annotations

from providers.adapters.types import Usage
from providers.adapters.usage import estimate_tokens, usage_from_openai, usage_to_openai


def test_usage_round_trip():
    usage = usage_from_openai({
        "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 7},
        "completion_tokens_details": {"reasoning_tokens": 5}, "cost": 0.0012,
    }, with_cost=True)
    assert usage == Usage(input_tokens=100, cached_input_tokens=40, cache_write_tokens=7, output_tokens=20,
                          reasoning_tokens=5, provider_cost=usage.provider_cost)
    assert str(usage.provider_cost) == "0.0012"
    assert usage_to_openai(usage) == {
        "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 7},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    assert usage_to_openai(Usage(input_tokens=3, output_tokens=4)) == {
        "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert usage_from_openai({"prompt_tokens": None, "prompt_tokens_details": None}) == Usage()
    assert usage_from_openai(None) is None


def test_estimate_is_about_four_characters_a_token_and_never_zero():
    assert [estimate_tokens(n) for n in (0, 1, 4, 5, 400)] == [1, 1, 1, 2, 100]
