"""Claude Code (npm ``@anthropic-ai/claude-code``) through Tollgate's /v1/messages: ``claude -p``
with ANTHROPIC_BASE_URL at the live gateway and the tenant key as ANTHROPIC_API_KEY, completing a
prompt through an Anthropic fake (relayed) and, through an alias, an OpenAI-compatible fake
(translated); every request it made has its ledger row with exact cost. The CLI is installed
from the npm registry into a cache directory when missing; the test never skips."""

import json
import os
import subprocess
import time
from decimal import Decimal

import pytest

from billing.models import UsageLog
from billing.pricing import usage_cost
from providers.models import ProviderModel
from providers.services import alias_create
from tenants.access import SYSTEM
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.utils.live import add_provider
from tests.utils.npm import npm_binary

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def claude_cli():
    return npm_binary("@anthropic-ai/claude-code", "claude")


def claude_print(claude, live, key: str, model: str, prompt: str, home) -> dict:
    """Run ``claude -p --output-format json`` against the live gateway in a fresh home; its
    result object."""
    home.mkdir()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("ANTHROPIC_", "CLAUDE_", "OPENAI_"))}
    env.update({
        "HOME": str(home), "ANTHROPIC_BASE_URL": live.url, "ANTHROPIC_API_KEY": key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model, "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model, "DISABLE_AUTOUPDATER": "1",
    })
    done = subprocess.run([str(claude), "-p", prompt, "--output-format", "json", "--max-turns", "1"], cwd=home,
                          env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"claude -p failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def ledger_rows(tenant, n: int, timeout: float = 10.0) -> list[UsageLog]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(UsageLog.objects.filter(tenant=tenant).order_by("id"))
        if len(rows) >= n:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"expected {n} ledger rows, found {UsageLog.objects.filter(tenant=tenant).count()}")


def assert_priced_exactly(rows: list[UsageLog]) -> None:
    for row in rows:
        model = ProviderModel.objects.get(pk=row.provider_model_id)
        expected = usage_cost(input_tokens=row.input_tokens, cached_input_tokens=row.cached_input_tokens,
                              cache_write_tokens=row.cache_write_tokens, output_tokens=row.output_tokens,
                              input_price=model.input_price, output_price=model.output_price,
                              cached_input_price=model.cached_input_price, cache_write_price=model.cache_write_price)
        assert (row.api, row.status, row.cost) == ("messages", "ok", expected), row
        assert row.cost > 0 and row.input_tokens > 0 and row.output_tokens > 0


def test_claude_code_through_an_anthropic_fake(world, live, tmp_path, claude_cli):
    usage = {"prompt_tokens": 2000, "completion_tokens": 9, "cached_tokens": 500, "cache_creation_tokens": 300}
    with FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-cc", usage=usage,
                       reply="Hello from Tollgate's Anthropic fake.") as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-cc")
        result = claude_print(claude_cli, live, world.chat_key, "claude-sonnet-4-5", "Say hello", tmp_path / "cc")
        sent = fake.requests_to("/v1/messages")
    assert result["result"] == "Hello from Tollgate's Anthropic fake." and not result.get("is_error")
    assert sent and all(r.body["model"] == "claude-sonnet-4-5" for r in sent)
    assert any(r.body.get("stream") is True for r in sent)
    assert all(r.headers["x-api-key"] == "sk-ant-cc" for r in sent)  # the provider's key, never the tenant's
    rows = ledger_rows(world.tenant, len(sent))
    assert len(rows) == len(sent)
    assert_priced_exactly(rows)
    sessions = {r.conversation_id for r in rows}  # Claude Code's session id, one per run
    assert len(sessions) == 1 and sessions != {""}
    assert all(r.end_user and len(r.end_user) < 128 for r in rows)  # its device, not the whole JSON
    assert {(r.cached_input_tokens, r.cache_write_tokens) for r in rows} == {(500, 300)}


def test_claude_code_through_an_alias_to_an_openai_compatible_fake(world, live, tmp_path, claude_cli):
    usage = {"prompt_tokens": 1500, "completion_tokens": 8}
    with FakeOpenAI(models=["gpt-4o-mini"], usage=usage, reply="Hello from Tollgate's OpenAI fake.") as fake:
        add_provider(world.tenant, fake, name="gpt", provider_type="openai")
        alias_create(tenant=world.tenant, actor=SYSTEM, data={"name": "sonnet-via-gpt",
                                                               "targets": [{"model": "gpt:gpt-4o-mini"}]})
        result = claude_print(claude_cli, live, world.chat_key, "sonnet-via-gpt", "Say hello", tmp_path / "cc")
        sent = fake.requests_to("/v1/chat/completions")
    assert result["result"] == "Hello from Tollgate's OpenAI fake." and not result.get("is_error")
    assert sent and all(r.body["model"] == "gpt-4o-mini" for r in sent)
    assert any(r.body.get("tools") for r in sent)  # Claude Code's tools, translated to functions
    rows = ledger_rows(world.tenant, len(sent))
    assert len(rows) == len(sent) and {r.model_requested for r in rows} == {"sonnet-via-gpt"}
    assert_priced_exactly(rows)
    assert Decimal(0) < sum(r.cost for r in rows)
