"""The cost of one request from its tokens and the model's prices (USD per million tokens)."""

from dataclasses import replace
from decimal import Decimal

from billing.pricing import deployment_cost, usage_cost
from providers.adapters.types import Usage
from tests.providers.adapters.helpers import make_deployment

PRICES = {"input_price": Decimal(3), "output_price": Decimal(15), "cached_input_price": Decimal("0.3")}


def test_cache_reads_and_writes_each_have_their_price():
    cost = usage_cost(input_tokens=1_000, cached_input_tokens=600, cache_write_tokens=300, output_tokens=100,
                      cache_write_price=Decimal("3.75"), **PRICES)
    # 100 uncached × $3 + 600 read × $0.30 + 300 written × $3.75 + 100 out × $15, per million
    assert cost == Decimal("0.003105000000")


def test_one_hour_cache_writes_cost_twice_the_input_price():
    cost = usage_cost(input_tokens=1_000, cached_input_tokens=600, cache_write_tokens=300, cache_write_1h_tokens=200,
                      output_tokens=100, cache_write_price=Decimal("3.75"), **PRICES)
    # 100 uncached × $3 + 600 read × $0.30 + 100 five-minute writes × $3.75 + 200 one-hour × $6 + 100 out × $15
    assert cost == Decimal("0.003555000000")
    deployment = replace(make_deployment(), input_price=Decimal(3), output_price=Decimal(15),
                         cached_input_price=Decimal("0.3"), cache_write_price=Decimal("3.75"))
    usage = Usage(input_tokens=1_000, cached_input_tokens=600, cache_write_tokens=300, cache_write_1h_tokens=200,
                  output_tokens=100)
    assert deployment_cost(deployment, usage) == cost
    hour_beyond_writes = usage_cost(input_tokens=1_000, cached_input_tokens=0, cache_write_tokens=10,
                                    cache_write_1h_tokens=50, output_tokens=0, **PRICES)
    assert hour_beyond_writes == (990 * 3 + 10 * 6) / Decimal(10**6)  # never more 1-hour writes than writes


def test_cache_writes_cost_the_input_price_when_the_model_has_no_cache_write_price():
    with_write = usage_cost(input_tokens=1_000, cached_input_tokens=0, cache_write_tokens=400, output_tokens=0,
                            cache_write_price=None, **PRICES)
    plain = usage_cost(input_tokens=1_000, cached_input_tokens=0, output_tokens=0, **PRICES)
    assert with_write == plain == Decimal("0.003000000000")


def test_counts_larger_than_the_prompt_never_make_a_negative_part():
    cost = usage_cost(input_tokens=100, cached_input_tokens=80, cache_write_tokens=80, output_tokens=0,
                      cache_write_price=Decimal("3.75"), **PRICES)
    assert cost == (80 * Decimal("0.3") + 20 * Decimal("3.75")) / Decimal(10**6)


def test_an_unknown_price_gives_none_never_zero():
    assert usage_cost(input_tokens=10, cached_input_tokens=0, output_tokens=5, input_price=None,
                      output_price=Decimal(1), cached_input_price=None) is None
    assert usage_cost(input_tokens=10, cached_input_tokens=0, output_tokens=5, input_price=Decimal(1),
                      output_price=None, cached_input_price=None) is None


def test_a_usage_costs_what_its_deployments_prices_say():
    deployment = replace(make_deployment(), input_price=Decimal(3), output_price=Decimal(15),
                         cached_input_price=Decimal("0.3"), cache_write_price=Decimal("3.75"))
    usage = Usage(input_tokens=1_000, cached_input_tokens=600, cache_write_tokens=300, output_tokens=100,
                  reasoning_tokens=50, provider_cost=Decimal(9))
    assert deployment_cost(deployment, usage) == Decimal("0.003105000000") == usage_cost(
        input_tokens=1_000, cached_input_tokens=600, cache_write_tokens=300, output_tokens=100,
        cache_write_price=Decimal("3.75"), **PRICES)
    assert deployment_cost(replace(deployment, output_price=None), usage) is None
