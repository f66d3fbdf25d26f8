"""Codex CLI (npm ``@openai/codex``) through Tollgate's /v1/responses: ``codex exec`` with a model
provider whose base_url is the live gateway's /v1 (``wire_api = "responses"``), completing a
prompt through an OpenAI fake (relayed) and through an Anthropic fake (translated), and running a
shell tool through the Anthropic fake (function_call out, its output back as a tool_result). The
CLI is installed from the npm registry into a cache directory when missing; the test never skips."""

import json
import os
import subprocess
import time
from decimal import Decimal

import pytest

from billing.models import UsageLog
from providers.models import ProviderModel
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.utils.live import add_provider
from tests.utils.npm import npm_binary

pytestmark = pytest.mark.django_db(transaction=True)

MICRO = Decimal("0.000000000001")


@pytest.fixture(scope="session")
def codex_cli():
    return npm_binary("@openai/codex", "codex")


def codex_exec(codex, live, key: str, model: str, prompt: str, home) -> list[dict]:
    """Run ``codex exec --json`` against the live gateway; the JSONL events it printed."""
    home.mkdir()
    (home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "tollgate"\n'
        "[model_providers.tollgate]\n"
        'name = "Tollgate"\n'
        f'base_url = "{live.url}/v1"\n'
        'env_key = "TOLLGATE_API_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )
    env = {**os.environ, "CODEX_HOME": str(home), "TOLLGATE_API_KEY": key}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    done = subprocess.run([str(codex), "exec", "--skip-git-repo-check", "--json", prompt], cwd=home, env=env,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"codex exec failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def answer_of(events: list[dict]) -> str:
    return "".join(e["item"]["text"] for e in events
                   if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message")


def ledger_rows(tenant, n: int, timeout: float = 10.0) -> list[UsageLog]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(UsageLog.objects.filter(tenant=tenant).order_by("id"))
        if len(rows) >= n:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"expected {n} ledger rows, found {UsageLog.objects.filter(tenant=tenant).count()}")


def test_codex_exec_through_an_openai_fake(world, live, tmp_path, codex_cli):
    usage = {"prompt_tokens": 3000, "completion_tokens": 12, "cached_tokens": 1024}
    with FakeOpenAI(models=["gpt-4o-mini"], usage=usage, reply="Hello from Tollgate's OpenAI fake.") as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        events = codex_exec(codex_cli, live, world.chat_key, "up:gpt-4o-mini", "Say hello", tmp_path / "codex")
        assert answer_of(events) == "Hello from Tollgate's OpenAI fake.", events
        turn = [e for e in events if e["type"] == "turn.completed"][-1]
        assert turn["usage"]["input_tokens"] == 3000 and turn["usage"]["cached_input_tokens"] == 1024, events
        sent = fake.requests_to("/v1/responses")
        assert sent and all(r.body["model"] == "gpt-4o-mini" and r.body["stream"] is True for r in sent)
    rows = ledger_rows(world.tenant, len(sent))
    model = ProviderModel.objects.get(pk=rows[0].provider_model_id)
    for row in rows:
        assert (row.api, row.status, row.stream) == ("responses", "ok", True), (row.status, row.error_type)
        assert (row.input_tokens, row.cached_input_tokens, row.output_tokens) == (3000, 1024, 12)
        expected = (1976 * model.input_price + 1024 * model.cached_input_price + 12 * model.output_price) / 10**6
        assert row.cost == expected.quantize(MICRO)


def test_codex_exec_through_an_anthropic_fake(world, live, tmp_path, codex_cli):
    usage = {"prompt_tokens": 3000, "completion_tokens": 9, "cached_tokens": 2000, "cache_creation_tokens": 500}
    with FakeAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-1", usage=usage,
                       reply="Hello from Tollgate's Anthropic fake.") as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-1")
        events = codex_exec(codex_cli, live, world.chat_key, "up:claude-sonnet-4-5", "Say hello", tmp_path / "codex")
        assert answer_of(events) == "Hello from Tollgate's Anthropic fake.", events
        sent = fake.requests_to("/v1/messages")
        assert sent and all(r.body["model"] == "claude-sonnet-4-5" and r.body["stream"] is True for r in sent)
        body = sent[0].body
        assert body["system"]  # Codex's developer instructions became the system prompt
        assert any(m["role"] == "user" and "Say hello" in json.dumps(m["content"]) for m in body["messages"])
        assert {t["name"] for t in body["tools"]} >= {"exec_command"}  # its function tools, translated
    rows = ledger_rows(world.tenant, len(sent))
    for row in rows:
        assert (row.api, row.status, row.stream) == ("responses", "ok", True)
        assert (row.cached_input_tokens, row.cache_write_tokens, row.output_tokens) == (2000, 500, 9)
        # genai-prices for claude-sonnet-4-5: $3 in, $0.30 cache read, $3.75 cache write, $15 out (per M)
        expected = (3000 * Decimal(3) + 2000 * Decimal("0.3") + 500 * Decimal("3.75") + 9 * Decimal(15)) / 10**6
        assert row.cost == expected.quantize(MICRO)


class OneToolCallAnthropic(FakeAnthropic):
    """Calls the configured tool until the conversation holds its result, then answers."""

    def tool_call_for(self, call):
        for message in call.body.get("messages") or ():
            content = message.get("content")
            if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result"
                                                 for b in content):
                return None
        return super().tool_call_for(call)


def test_codex_runs_a_tool_through_an_anthropic_fake(world, live, tmp_path, codex_cli):
    tool = {"name": "exec_command", "id": "toolu_codex1", "arguments": {"cmd": "echo tollgate-round-trip"}}
    with OneToolCallAnthropic(models=["claude-sonnet-4-5"], api_key="sk-ant-1", tool_call=tool,
                              reply="The command printed tollgate-round-trip.") as fake:
        add_provider(world.tenant, fake, provider_type="anthropic", api_key="sk-ant-1")
        events = codex_exec(codex_cli, live, world.chat_key, "up:claude-sonnet-4-5", "Run echo", tmp_path / "codex")
        assert answer_of(events) == "The command printed tollgate-round-trip.", events
        sent = fake.requests_to("/v1/messages")
        assert len(sent) >= 2
        last = sent[-1].body["messages"]
        uses = [b for m in last if isinstance(m["content"], list) for b in m["content"] if b.get("type") == "tool_use"]
        results = [b for m in last if isinstance(m["content"], list) for b in m["content"]
                   if b.get("type") == "tool_result"]
        assert uses[0]["id"] == "toolu_codex1" and uses[0]["input"] == tool["arguments"]
        assert results[0]["tool_use_id"] == "toolu_codex1"
        assert "tollgate-round-trip" in json.dumps(results[0]["content"])
    rows = ledger_rows(world.tenant, len(sent))
    assert all(row.api == "responses" and row.status == "ok" for row in rows)
