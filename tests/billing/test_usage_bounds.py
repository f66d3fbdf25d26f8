"""Usage is bounded to what a ledger row holds however an adapter built it: counts and the
reported cost are clamped where the request becomes a row (``billing.pricing.usage_bounded``),
and the Usage says it was clamped."""

from decimal import Decimal

from billing.pricing import MAX_COST, MAX_TOKENS, usage_bounded
from providers.adapters.anthropic import usage_from_anthropic
from providers.adapters.ollama import _usage as usage_from_ollama
from providers.adapters.types import Usage
from providers.adapters.usage import usage_from_openai


def test_counts_past_the_ledger_are_clamped_and_flagged_in_every_shape():
    openai = usage_bounded(usage_from_openai({"prompt_tokens": 3e9, "completion_tokens": 2**40,
                                              "completion_tokens_details": {"reasoning_tokens": 2**33}}))
    assert (openai.input_tokens, openai.output_tokens, openai.reasoning_tokens) == (MAX_TOKENS,) * 3
    assert openai.clamped
    # Anthropic's input is the sum of three counts, each of which fits.
    anthropic = usage_bounded(usage_from_anthropic({"input_tokens": 2**30, "cache_read_input_tokens": 2**30,
                                                    "cache_creation_input_tokens": 2**30, "output_tokens": 1}))
    assert anthropic.input_tokens == MAX_TOKENS and anthropic.clamped
    ollama = usage_bounded(usage_from_ollama({"prompt_eval_count": 10**12, "eval_count": 3}))
    assert (ollama.input_tokens, ollama.output_tokens, ollama.clamped) == (MAX_TOKENS, 3, True)


def test_counts_that_fit_are_left_alone_and_a_clamped_usage_stays_flagged():
    usage = usage_bounded(Usage(input_tokens=10, output_tokens=20))
    assert (usage.input_tokens, usage.output_tokens, usage.clamped) == (10, 20, False)
    usage.output_tokens = -3
    assert usage_bounded(usage).output_tokens == 0 and usage.clamped
    assert usage_bounded(usage).clamped  # bounding again keeps the flag


def test_a_reported_cost_is_bounded_and_rounded_as_stored():
    assert usage_bounded(usage_from_openai({"cost": 1e9}, with_cost=True)).provider_cost == MAX_COST
    negative = usage_bounded(usage_from_openai({"cost": -5}, with_cost=True))
    assert negative.provider_cost == 0 and negative.clamped
    tiny = usage_bounded(usage_from_openai({"cost": "1e-99999"}, with_cost=True))
    assert tiny.provider_cost == 0 and not tiny.clamped  # rounded to the 12 places kept, not clamped
    plain = usage_bounded(usage_from_openai({"cost": 0.0012}, with_cost=True))
    assert str(plain.provider_cost) == "0.0012" and not plain.clamped
    assert usage_bounded(Usage(provider_cost=Decimal("99999999.999999999999"))).clamped is False
