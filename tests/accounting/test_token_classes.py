"""Cost by token class: each usage shape an upstream reports, read into its classes and priced by hand.

Prices are written in USD per million tokens (as configured), so each expected cost below is the sum of
``tokens x price / 1e6`` over the classes, spelt out.
"""

from __future__ import annotations

from typing import Any

import genai_prices
import pytest

from anygate.accounting.pricing import MILLION, Price, PriceBook, discovered_price, genai_price, usd_text
from anygate.accounting.setup import configured_prices
from anygate.accounting.usage import TokenCount, count_of, upstream_cost
from anygate.settings import Settings

M = MILLION


def price(input: float, output: float, **classes: float) -> Price:
    """A configured price given per million tokens, as in the config file."""
    return Price(input / M, output / M, "configured", **{name: value / M for name, value in classes.items()})


def cost_of(usage: dict[str, Any], of: Price) -> float:
    count = count_of(usage)
    assert count is not None
    return of.cost(count)


GPT = price(2.50, 10.00, cached_input=1.25)
CLAUDE = price(3.00, 15.00, cached_input=0.30, cache_write=3.75)
AUDIO = price(2.50, 10.00, audio_input=40.00, audio_output=80.00)


def test_openai_cached_prompt_tokens_are_priced_at_the_cached_price() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 600},
    }
    count = count_of(usage)
    assert count == TokenCount(1000, 200, cached_input=600)
    # 400 fresh x $2.50 + 600 cached x $1.25 + 200 out x $10 (per million)
    expected = (400 * 2.50 + 600 * 1.25 + 200 * 10.00) / 1e6  # = 0.00375
    assert cost_of(usage, GPT) == pytest.approx(expected) == pytest.approx(0.00375)


def test_anthropic_usage_counts_cache_reads_and_writes_beside_its_input_tokens() -> None:
    # Anthropic's input_tokens leaves the cache out: the prompt is 100 + 2000 + 500 = 2600 tokens.
    usage = {
        "input_tokens": 100,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 500,
        "output_tokens": 300,
    }
    assert count_of(usage) == TokenCount(2600, 300, cached_input=2000, cache_write=500)
    expected = (100 * 3.00 + 2000 * 0.30 + 500 * 3.75 + 300 * 15.00) / 1e6  # = 0.007275
    assert cost_of(usage, CLAUDE) == pytest.approx(expected) == pytest.approx(0.007275)


def test_a_cache_write_in_the_chat_form_is_priced_at_the_write_price() -> None:
    # OpenRouter (and anygate's translation of an Anthropic answer) report both in prompt_tokens_details.
    usage = {
        "prompt_tokens": 2600,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 500},
    }
    assert cost_of(usage, CLAUDE) == pytest.approx((100 * 3.00 + 2000 * 0.30 + 500 * 3.75 + 300 * 15.00) / 1e6)


def test_deepseek_cache_hits_are_cached_tokens() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 10,
        "prompt_cache_hit_tokens": 900,
        "prompt_cache_miss_tokens": 100,
    }
    deepseek = price(0.27, 1.10, cached_input=0.07)
    assert count_of(usage) == TokenCount(1000, 10, cached_input=900)
    assert cost_of(usage, deepseek) == pytest.approx((100 * 0.27 + 900 * 0.07 + 10 * 1.10) / 1e6)


def test_the_responses_form_reads_its_own_details() -> None:
    usage = {
        "input_tokens": 1000,
        "input_tokens_details": {"cached_tokens": 600},
        "output_tokens": 500,
        "output_tokens_details": {"reasoning_tokens": 300},
        "total_tokens": 1500,
    }
    assert count_of(usage) == TokenCount(1000, 500, cached_input=600, reasoning=300)
    assert cost_of(usage, GPT) == pytest.approx((400 * 2.50 + 600 * 1.25 + 500 * 10.00) / 1e6)


def test_reasoning_inside_the_completion_is_counted_once() -> None:
    # OpenAI: completion_tokens (500) already holds the 400 reasoning tokens; total = 50 + 500.
    usage = {
        "prompt_tokens": 50,
        "completion_tokens": 500,
        "total_tokens": 550,
        "completion_tokens_details": {"reasoning_tokens": 400},
    }
    assert count_of(usage) == TokenCount(50, 500, reasoning=400)
    assert cost_of(usage, GPT) == pytest.approx((50 * 2.50 + 500 * 10.00) / 1e6)  # not 900 output tokens


def test_reasoning_reported_beside_the_completion_is_added_once() -> None:
    # An upstream whose completion_tokens (100) leaves the 400 reasoning tokens out: total = 50 + 100 + 400.
    beside = {
        "prompt_tokens": 50,
        "completion_tokens": 100,
        "total_tokens": 550,
        "completion_tokens_details": {"reasoning_tokens": 400},
    }
    assert count_of(beside) == TokenCount(50, 500, reasoning=400)
    assert cost_of(beside, GPT) == pytest.approx((50 * 2.50 + 500 * 10.00) / 1e6)
    # More reasoning than completion cannot be inside it: 10 + 50 output tokens, never zero for the reasoning.
    larger = {"prompt_tokens": 5, "completion_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 50}}
    assert count_of(larger) == TokenCount(5, 60, reasoning=50)


def test_audio_tokens_are_priced_at_the_audio_prices_when_the_price_has_them() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"audio_tokens": 800, "cached_tokens": 0},
        "completion_tokens_details": {"audio_tokens": 450, "reasoning_tokens": 0},
    }
    assert count_of(usage) == TokenCount(1000, 500, audio_input=800, audio_output=450)
    # 200 text in x $2.50 + 800 audio in x $40 + 50 text out x $10 + 450 audio out x $80
    expected = (200 * 2.50 + 800 * 40.00 + 50 * 10.00 + 450 * 80.00) / 1e6  # = 0.069
    assert cost_of(usage, AUDIO) == pytest.approx(expected) == pytest.approx(0.069)
    # A price with no audio price: plain input and output.
    assert cost_of(usage, GPT) == pytest.approx((1000 * 2.50 + 500 * 10.00) / 1e6)


def test_image_tokens_are_priced_at_the_image_prices_when_the_price_has_them() -> None:
    usage = {
        "input_tokens": 1200,
        "input_tokens_details": {"image_tokens": 1000, "text_tokens": 200},
        "output_tokens": 4000,
        "output_tokens_details": {"image_tokens": 4000},
    }
    images = price(5.00, 10.00, image_input=10.00, image_output=40.00)
    assert count_of(usage) == TokenCount(1200, 4000, image_input=1000, image_output=4000)
    assert cost_of(usage, images) == pytest.approx((200 * 5.00 + 1000 * 10.00 + 4000 * 40.00) / 1e6)


def test_a_class_larger_than_its_side_is_cut_so_no_token_is_priced_twice() -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 5000}}
    assert count_of(usage) == TokenCount(1000, 10, cached_input=1000)
    assert cost_of(usage, GPT) == pytest.approx((1000 * 1.25 + 10 * 10.00) / 1e6)


def test_plain_usage_has_no_classes_and_costs_as_before() -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert count_of(usage) == TokenCount(7, 3)
    assert cost_of(usage, GPT) == pytest.approx((7 * 2.50 + 3 * 10.00) / 1e6)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 7, "cost": 0.0123}, 0.0123),
        ({"cost": 0}, 0.0),
        # OpenRouter's own BYOK: its fee, and what the provider bills
        ({"cost": 0.001, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.02}}, 0.021),
        ({"cost": 0.001, "cost_details": {"upstream_inference_cost": 0.02}}, 0.001),
        ({"cost": "0.1"}, None),
        ({"cost": -1}, None),
        ({"cost": True}, None),
        ({"cost": float("nan")}, None),
        ({"prompt_tokens": 7}, None),
        (None, None),
    ],
)
def test_the_cost_an_upstream_reports(usage: dict[str, Any] | None, expected: float | None) -> None:
    found = upstream_cost(usage)
    assert found == (None if expected is None else pytest.approx(expected))


def test_configured_prices_carry_their_classes_per_million() -> None:
    settings = Settings.model_validate(
        {
            "prices": {
                "lab/*": {"input": 2, "output": 8, "cached_input": 0.5, "cache_write": 2.5},
                "lab/voice": {"input": 2.5, "output": 10, "audio_input": 40, "audio_output": 80},
            }
        }
    )
    prices = configured_prices(settings)
    assert prices[("lab", "*")] == price(2, 8, cached_input=0.5, cache_write=2.5)
    assert prices[("lab", "voice")] == price(2.5, 10, audio_input=40, audio_output=80)
    assert prices[("lab", "*")].source == "configured"


def test_a_negative_class_price_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="cached_input"):
        Settings.model_validate({"prices": {"lab/*": {"input": 2, "output": 8, "cached_input": -1}}})


def test_an_upstreams_published_cache_prices_are_used() -> None:
    entry = {"pricing": {"prompt": "0.000003", "completion": "0.000015", "input_cache_read": "0.0000003",
                         "input_cache_write": "0.00000375"}}  # fmt: skip
    found = discovered_price(entry)
    assert found == Price(3e-6, 15e-6, "discovered", cached_input=3e-7, cache_write=3.75e-6)
    assert found is not None and found.source == "catalog"


def test_genai_prices_supplies_the_classes_and_agrees_with_its_own_arithmetic() -> None:
    found = genai_price("openai", "gpt-4o")
    assert found is not None and found.cached_input is not None and found.cached_input < found.input
    ours = found.cost(TokenCount(1000, 200, cached_input=600))
    theirs = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1000, cache_read_tokens=600, output_tokens=200), "gpt-4o", provider_id="openai"
    )
    assert ours == pytest.approx(float(theirs.total_price))
    claude = genai_price("anthropic", "claude-sonnet-4-5")
    assert claude is not None and claude.cache_write is not None
    ours = claude.cost(TokenCount(2600, 300, cached_input=2000, cache_write=500))
    theirs = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=2600, cache_read_tokens=2000, cache_write_tokens=500, output_tokens=300),
        "claude-sonnet-4-5",
        provider_id="anthropic",
    )
    assert ours == pytest.approx(float(theirs.total_price))


def test_the_price_book_says_where_a_cost_came_from() -> None:
    book = PriceBook({("lab", "*"): price(2, 8)})
    assert book.charge("lab", "m", TokenCount(1000, 100)) == (pytest.approx((1000 * 2 + 100 * 8) / 1e6), "configured")
    assert book.charge("elsewhere", "m", TokenCount(1, 1)) == (None, None)


@pytest.mark.parametrize(
    ("cost", "text"),
    [(0.00375, "0.00375"), (0.0, "0"), (1.5e-05, "0.000015"), (0.1 + 0.2, "0.3"), (12.5, "12.5"), (1e-13, "0")],
)
def test_a_cost_header_is_a_plain_decimal(cost: float, text: str) -> None:
    assert usd_text(cost) == text
