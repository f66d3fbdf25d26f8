"""The end user of a request (issue #16): `user` (Chat Completions, Responses),
`metadata.user_id` (Messages), or the x-tollgate-end-user header, which wins; bounded, on the
ledger row."""

import httpx
import pytest

from tests.fakes import FakeOpenAI
from tests.utils.live import add_provider, wait_usage

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hi"}]


def post(live, path: str, body: dict, headers: dict) -> httpx.Response:
    response = httpx.post(f"{live.url}{path}", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("door", ["chat", "responses", "messages"])
def test_the_header_names_the_end_user_and_wins_over_the_body(world, live, door):
    with FakeOpenAI(models=["m"]) as fake:
        add_provider(world.tenant, fake)
        if door == "messages":
            path, auth = "/v1/messages", {"x-api-key": world.chat_key, "anthropic-version": "2023-06-01"}
            body = {"model": "up:m", "max_tokens": 20, "messages": HELLO, "metadata": {"user_id": "from-body"}}
        elif door == "responses":
            path, auth = "/v1/responses", {"Authorization": f"Bearer {world.chat_key}"}
            body = {"model": "up:m", "input": "hi", "user": "from-body"}
        else:
            path, auth = "/v1/chat/completions", {"Authorization": f"Bearer {world.chat_key}"}
            body = {"model": "up:m", "messages": HELLO, "user": "from-body"}
        plain = post(live, path, body, auth)
        assert wait_usage(plain.headers["x-request-id"]).end_user == "from-body"
        named = post(live, path, body, {**auth, "x-tollgate-end-user": "customer-42"})
        assert wait_usage(named.headers["x-request-id"]).end_user == "customer-42"
        long = post(live, path, body, {**auth, "x-tollgate-end-user": "x" * 500})
        assert wait_usage(long.headers["x-request-id"]).end_user == "x" * 128
