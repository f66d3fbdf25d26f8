"""OpenAI message content (providers/adapters/messages.py)."""

from __future__ import annotations

from providers.adapters.messages import parse_data_url


def test_parse_data_url():
    assert parse_data_url("data:image/png;base64,AAAA") == ("image/png", "AAAA")
    assert parse_data_url("data:image/svg+xml,<svg/>") is None
    assert parse_data_url("https://x/y.png") is None
