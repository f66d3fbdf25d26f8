"""Through the gateway: requests that name an end user reach the end-user rollup with their
key's project, on the tenant's local day, and the top list shows them."""

import httpx
import pytest

from billing.end_users import top_end_users
from billing.models import EndUserDaily, UsageLog
from billing.periods import local_today
from tenants.models import ApiKey
from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)


def test_requests_through_the_gateway_land_in_the_end_user_rollup(world, live):
    key = ApiKey.objects.get(tenant=world.tenant, scope="chat")
    auth = {"Authorization": f"Bearer {world.chat_key}"}
    body = {"model": "up:m", "messages": [{"role": "user", "content": "hi"}], "user": "from-body"}
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        ids = [httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=30,
                          headers={**auth, **headers}).headers["x-request-id"]
               for headers in ({}, {"x-tollgate-end-user": "customer-42"}, {"x-tollgate-end-user": "customer-42"})]
        rows = [wait_usage(request_id) for request_id in ids]
    totals = {(r.end_user, r.project_id): r for r in EndUserDaily.objects.filter(tenant=world.tenant)}
    assert set(totals) == {("from-body", key.project_id), ("customer-42", key.project_id)}
    customer = totals[("customer-42", key.project_id)]
    ledger = list(UsageLog.objects.filter(request_id__in=ids[1:]))
    assert customer.requests == 2 and customer.day == local_today(world.tenant.timezone)
    assert customer.input_tokens == sum(r.input_tokens for r in ledger) > 0
    assert customer.cost == sum(r.cost or 0 for r in ledger)
    assert rows[0].end_user == "from-body"
    top = top_end_users(tenant=world.tenant, period="today")
    assert [(r.end_user, r.requests, r.project_slug, r.status) for r in top.rows] == [
        ("customer-42", 2, "default", "ok"), ("from-body", 1, "default", "ok")]
