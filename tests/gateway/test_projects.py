"""The data plane knows a key's project: every /v1 request's ledger row carries the project of the
key it came with (streamed or not, through every door), and a usage summary by project adds up."""

import pytest

from billing.models import UsageLog
from tenants.access import SYSTEM
from tenants.models import Project
from tenants.services import api_key_create
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, sdk, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)


def hello():
    return [{"role": "user", "content": "Say hello"}]


def test_a_requests_ledger_row_carries_its_keys_project(world, live):
    bot = Project.objects.create(tenant=world.tenant, slug="bot", name="Support bot")
    bot_key, bot_raw = api_key_create(tenant=world.tenant, name="bot", project=bot, actor=SYSTEM)
    default = Project.objects.get(tenant=world.tenant, slug="default")
    with FakeOpenAI(models=["gpt-4o-mini", "text-embedding-3-small"]) as fake:
        add_provider(world.tenant, fake, provider_type="openai")
        bot_client, plain_client = sdk(live, bot_raw), sdk(live, world.chat_key)
        plain = plain_client.chat.completions.with_raw_response.create(model="up:gpt-4o-mini", messages=hello())
        chat = bot_client.chat.completions.with_raw_response.create(model="up:gpt-4o-mini", messages=hello())
        with bot_client.chat.completions.with_streaming_response.create(
            model="up:gpt-4o-mini", messages=hello(), stream=True, stream_options={"include_usage": True},
        ) as streamed:
            streamed_id = streamed.headers["x-request-id"]
            for _ in streamed.iter_lines():
                pass
        embedded = bot_client.embeddings.with_raw_response.create(model="up:text-embedding-3-small", input="a")

    bot_rows = [wait_usage(r) for r in (chat.headers["x-request-id"], streamed_id, embedded.headers["x-request-id"])]
    assert [(r.project_id, r.api_key_id, r.status) for r in bot_rows] == [(bot.pk, bot_key.pk, "ok")] * 3
    assert bot_rows[1].stream and bot_rows[2].api == "embeddings"
    assert wait_usage(plain.headers["x-request-id"]).project_id == default.pk
    assert UsageLog.objects.filter(tenant=world.tenant, project_id=bot.pk).count() == 3
