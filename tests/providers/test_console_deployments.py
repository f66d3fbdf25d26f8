"""The console's deployments (issue #14): the alias form's groups, weights, limits, strategy,
session affinity and error-class fallbacks, errors shown on the field they concern, and the
aliases page's live traffic per deployment, written into Redis by the gateway's own writers
(gateway.state.RedisState) and read back in one pipeline; without Redis the page still renders."""

import asyncio
import html as html_lib
import re
import time

import pytest
from django.test import Client

from core.redis import get_redis
from gateway.deployments import Ended
from gateway.state import RedisState
from providers.models import ModelAlias
from providers.services import alias_create
from tenants.access import SYSTEM
from tests.config.console.conftest import build_console
from tests.config.console.test_pages import error_next_to
from tests.utils.procs import free_port

GPT = "openai:gpt-4o"
LLAMA = "lab:meta-llama/llama-3.1-8b:free"


@pytest.fixture
def console(world, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the own provider's URL is on loopback
    return build_console(world)


@pytest.fixture
def admin(console) -> Client:
    client = Client()
    client.force_login(console.world.admin)
    return client


def alias_post(name: str, *rows: dict, **settings) -> dict:
    """The alias form as a browser posts it: ``rows`` are the deployments' fields (model,
    priority, weight, rpm_limit, tpm_limit, …), in order."""
    data = {"name": name, "retries": "1", "allowed_fails": "3", "cooldown_seconds": "60", "strategy": "weighted",
            "targets-TOTAL_FORMS": str(len(rows)), "targets-INITIAL_FORMS": "0", "targets-MIN_NUM_FORMS": "0",
            "targets-MAX_NUM_FORMS": "20", **settings}
    for i, row in enumerate(rows):
        data[f"targets-{i}-ORDER"] = str(i + 1)
        data.update({f"targets-{i}-{k}": str(v) for k, v in row.items()})
    return data


def cells(html: str, alias: ModelAlias) -> dict[str, list[str]]:
    """The aliases page's deployments table of one alias: model → the texts of its cells."""
    table = re.search(rf'<table class="deployments" id="deployments-{alias.pk}">(.*?)</table>', html, re.S)
    assert table, f"no deployments table for {alias.name}"
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table.group(1).split("<tbody>")[1], re.S):
        texts = [" ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", c)).split())
                 for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        rows[texts[0].split()[0]] = texts[1:]
    return rows


# --- the form -------------------------------------------------------------------------------------


def test_deployments_in_one_group_with_weights_limits_and_routing_settings(console, admin):
    # when an alias is created with two deployments in group 0, weights 3 and 1, limits on one,
    # and routing settings
    data = alias_post(
        "spread",
        {"model": GPT, "priority": 0, "weight": 3, "rpm_limit": 60, "tpm_limit": 100000},
        {"model": LLAMA, "priority": 0, "weight": 1, "temperature": 0.3},
        strategy="least-busy", session_affinity="on",
        context_window_fallbacks=" smart-cheap,  openai:gpt-4o ", content_policy_fallbacks="",
    )
    response = admin.post("/app/acme/aliases/new/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    # then they are saved as the REST API would save them
    alias = ModelAlias.objects.get(tenant=console.tenant, name="spread")
    assert (alias.strategy, alias.session_affinity) == ("least-busy", True)
    assert alias.context_window_fallbacks == ["smart-cheap", GPT] and alias.content_policy_fallbacks == []
    saved = [(t.provider_model_id, t.priority, t.weight, t.rpm_limit, t.tpm_limit, t.overrides)
             for t in alias.targets.order_by("position")]
    assert saved == [(console.gpt.pk, 0, 3, 60, 100000, {}), (console.llama.pk, 0, 1, None, None, {"temperature": 0.3})]

    # and the edit page shows them again: a group equal to the row's position is left blank
    page = admin.get(f"/app/acme/aliases/{alias.pk}/").content.decode()
    assert re.search(r'<input[^>]*name="targets-0-priority"(?![^>]*value=)[^>]*>', page)
    assert re.search(r'<input[^>]*name="targets-1-priority"[^>]*value="0"', page)
    assert re.search(r'<input[^>]*name="targets-0-weight"[^>]*value="3"', page)
    assert re.search(r'<input[^>]*name="targets-0-rpm_limit"[^>]*value="60"', page)
    assert re.search(r'<option value="least-busy" selected>', page)
    assert re.search(r'<input[^>]*name="session_affinity"[^>]*checked', page)
    assert 'value="smart-cheap, openai:gpt-4o"' in page

    # when it is edited: weighted, no affinity, fallbacks cleared, the second row's weight 0
    data = alias_post("spread", {"model": GPT, "weight": 3, "rpm_limit": 60},
                      {"model": LLAMA, "priority": 0, "weight": 0}, content_policy_fallbacks="smart-cheap")
    data["targets-INITIAL_FORMS"] = "2"
    assert admin.post(f"/app/acme/aliases/{alias.pk}/", data).status_code == 302
    alias.refresh_from_db()
    assert (alias.strategy, alias.session_affinity, alias.context_window_fallbacks,
            alias.content_policy_fallbacks) == ("weighted", False, [], ["smart-cheap"])
    assert [(t.priority, t.weight, t.rpm_limit, t.tpm_limit) for t in alias.targets.order_by("position")] == [
        (0, 3, 60, None), (0, 0, None, None)]


def test_a_blank_group_is_the_rows_position_so_a_plain_list_stays_a_chain(console, admin):
    data = alias_post("chain", {"model": LLAMA}, {"model": GPT})
    data.update({"targets-0-ORDER": "2", "targets-1-ORDER": "1"})  # the second row is moved first
    assert admin.post("/app/acme/aliases/new/", data).status_code == 302
    alias = ModelAlias.objects.get(tenant=console.tenant, name="chain")
    assert [(t.provider_model_id, t.priority, t.weight) for t in alias.targets.order_by("position")] == [
        (console.gpt.pk, 0, 1), (console.llama.pk, 1, 1)]


def test_errors_are_shown_on_the_field_they_concern(console, admin):
    # a strategy with every deployment alone in its group: above the deployments
    response = admin.post("/app/acme/aliases/new/", alias_post("lonely", {"model": GPT}, {"model": LLAMA},
                                                               strategy="latency"))
    assert response.status_code == 400
    page = response.content.decode()
    block = re.search(r'<legend>Deployments, in priority groups</legend>.*?</fieldset>', page, re.S).group(0)
    assert "alone in its priority group" in html_lib.unescape(block)
    # a fallback that names nothing this tenant can call, and one naming the alias itself
    response = admin.post("/app/acme/aliases/new/", alias_post(
        "falls", {"model": GPT}, context_window_fallbacks="smart-cheap, nowhere"))
    assert response.status_code == 400
    assert error_next_to(response.content.decode(), "context_window_fallbacks") == (
        "'nowhere' is neither an alias of this tenant nor a model it may use.")
    response = admin.post("/app/acme/aliases/new/", alias_post("falls", {"model": GPT},
                                                               content_policy_fallbacks="falls"))
    assert error_next_to(response.content.decode(), "content_policy_fallbacks") == (
        "An alias cannot fall back to itself.")
    response = admin.post("/app/acme/aliases/new/", alias_post(
        "falls", {"model": GPT}, context_window_fallbacks=", ".join(f"m{i}" for i in range(11))))
    assert "at most 10" in error_next_to(response.content.decode(), "context_window_fallbacks")
    # the API's bounds on a deployment's fields, on that row's field
    response = admin.post("/app/acme/aliases/new/", alias_post(
        "bounds", {"model": GPT}, {"model": LLAMA, "weight": -1, "rpm_limit": 0}))
    assert response.status_code == 400
    page = response.content.decode()
    assert "greater than or equal to 0" in error_next_to(page, "targets-1-weight")
    assert "greater than or equal to 1" in error_next_to(page, "targets-1-rpm_limit")
    # the service refusing a saved deployment's model that is no longer usable: on its row, which
    # the form lists second but orders first (the service's targets[0])
    console.llama.enabled = False
    console.llama.save(update_fields=["enabled"])
    data = alias_post("smart-cheap", {"model": GPT}, {"model": LLAMA})
    data.update({"targets-0-ORDER": "2", "targets-1-ORDER": "1", "targets-INITIAL_FORMS": "2"})
    response = admin.post(f"/app/acme/aliases/{console.alias.pk}/", data)
    assert response.status_code == 400
    assert "is not a model this tenant may use" in error_next_to(response.content.decode(), "targets-1-model")
    assert set(ModelAlias.objects.filter(tenant=console.tenant).values_list("name", flat=True)) == {"smart-cheap"}


# --- the aliases page -------------------------------------------------------------------------------


def _away_from_a_minute_boundary():
    """The counters are per UTC minute: write and read inside the same one."""
    if time.time() % 60 > 55:
        time.sleep(60.2 - time.time() % 60)


def _write_traffic(settings, console) -> None:
    """Through the gateway's own writers: 3 requests to gpt-4o (one still in flight, 1200
    tokens, 250 ms), 1 stream to llama (80 ms to first token); gpt-4o then fails into a
    cooldown and llama's upstream answers 429 retry-after 30; the outsider's traffic on the
    same provider model counts for the outsider only."""
    tenant = console.tenant.pk

    async def write():
        state = RedisState(settings.REDIS_URL)
        try:
            for n in range(3):
                await state.take(tenant_id=tenant, provider_model_id=console.gpt.pk, request_id=f"g{n}")
            await state.take(tenant_id=tenant, provider_model_id=console.llama.pk, request_id="l0")
            for n in range(5):
                await state.take(tenant_id=console.world.other.pk, provider_model_id=console.gpt.pk,
                                 request_id=f"o{n}")
            await state.traffic_settle([
                Ended(tenant, "g0", (console.gpt.pk,), console.gpt.pk, 700, 250.0, False),
                Ended(tenant, "g1", (console.gpt.pk,), console.gpt.pk, 500, 250.0, False),
                Ended(tenant, "l0", (console.llama.pk,), console.llama.pk, 90, 80.0, True),
            ])
            await state.record_failure(tenant_id=tenant, provider_model_id=console.gpt.pk, allowed_fails=0,
                                       cooldown_seconds=60)
            await state.cool(tenant_id=tenant, provider_model_id=console.llama.pk, seconds=30)
        finally:
            await state.close()

    asyncio.run(write())


def test_the_aliases_page_shows_each_deployments_traffic(console, admin, settings):
    # given an alias spreading over gpt-4o (weight 3, 5 rpm) and llama in one group, and traffic
    alias = alias_create(tenant=console.tenant, data={"name": "spread", "strategy": "least-busy",
                                                      "session_affinity": True,
                                                      "context_window_fallbacks": ["smart-cheap"], "targets": [
        {"model": GPT, "priority": 0, "weight": 3, "rpm_limit": 5, "tpm_limit": 1000},
        {"model": LLAMA, "priority": 0, "weight": 1}]}, actor=SYSTEM)
    _away_from_a_minute_boundary()
    _write_traffic(settings, console)
    # when the page is read
    response = admin.get("/app/acme/aliases/")
    assert response.status_code == 200
    page = response.content.decode()
    # then each deployment shows its share of the last hour, this minute against its limits,
    # in flight, latency and cooldown
    rows = cells(page, alias)
    group, weight, share, minute, tokens, in_flight, latency, cooldown = rows[GPT]
    assert (group, weight, share, minute, tokens, in_flight, latency) == (
        "0", "3", "75 % (3)", "3 / 5", "1200 / 1000 at limit", "1", "250 ms / —")
    assert cooldown == "cooling 60 s"
    group, weight, share, minute, tokens, in_flight, latency, cooldown = rows[LLAMA]
    assert (group, weight, share, minute, tokens, in_flight, latency) == (
        "0", "1", "25 % (1)", "1 / none", "90 / none", "0", "— / 80 ms")
    assert re.fullmatch(r"told to wait (29|30) s by a 429", cooldown), cooldown
    # the alias's routing settings are in its card
    assert "Strategy: fewest requests in flight · session affinity on" in " ".join(page.split())
    assert "context-window fallbacks:" in page and "traffic-note" not in page
    # the older alias names the same provider models: the counters are theirs, so it shows them too
    assert cells(page, console.alias)[GPT][2] == "75 % (3)"


def test_an_alias_without_traffic_shows_no_share(console, admin):
    page = admin.get("/app/acme/aliases/").content.decode()
    share, minute, in_flight, cooldown = (cells(page, console.alias)[GPT][i] for i in (2, 3, 5, 7))
    assert (share, minute, in_flight, cooldown) == ("no requests (0)", "0 / none", "0", "none")


@pytest.fixture
def redis_at(settings):
    """``redis_at(url)`` points the console's Redis client elsewhere ("" : none)."""

    def point(url: str) -> None:
        settings.REDIS_URL = url
        get_redis.cache_clear()

    yield point
    get_redis.cache_clear()


@pytest.mark.parametrize("url, note", [
    ("", "without Redis (REDIS_URL unset) each gateway worker keeps its own counters"),
    (f"redis://127.0.0.1:{free_port()}/0", "Redis cannot be reached right now"),
])
def test_without_redis_the_page_renders_with_dashes_and_a_note(console, admin, redis_at, url, note):
    spread = alias_create(tenant=console.tenant, data={"name": "spread", "targets": [
        {"model": GPT, "priority": 0, "rpm_limit": 5}, {"model": LLAMA, "priority": 0}]}, actor=SYSTEM)
    redis_at(url)
    response = admin.get("/app/acme/aliases/")
    assert response.status_code == 200
    page = response.content.decode()
    assert note in page
    # the deployments and their limits are there; what only Redis knows is a dash
    assert cells(page, spread)[GPT] == ["0", "1", "—", "— / 5", "— / none", "—", "—", "—"]
