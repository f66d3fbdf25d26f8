"""Bad input to any /api route is a 4xx in the {"error": {"type", "message", "fields"?}} shape,
never a 500: the shared JSON parser, the exception handler and the JSON 404 for unknown paths.
(tests/test_openapi.py fuzzes every route; these are the cases fuzzing found, by name.)"""

import pytest

from providers.services import provider_create

pytestmark = pytest.mark.django_db

DEEP = "[" * 10_000 + "]" * 10_000
JSON_ROUTES = [
    "/api/providers/test",
    "/api/test/llm",
    "/api/aliases",
    "/api/budgets",
    "/api/keys",
    "/api/providers",
]


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_deeply_nested_json_is_a_400(world, client_for, path):
    response = client_for(key=world.admin_key).post(path, DEEP, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_json"
    assert "nested more than 32 levels" in error["message"]


def test_nesting_under_the_limit_reaches_the_serializer(world, client_for):
    body = '{"name": ' + "[" * 30 + "]" * 30 + "}"
    response = client_for(key=world.admin_key).post(
        "/api/keys", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"name": ["Expected a string, got an array."]}


@pytest.mark.parametrize(
    "body", ['{"name": NaN}', '{"name": Infinity}', b'{"name": "\xff"}', "{", ""]
)
def test_bodies_that_are_not_json_are_a_400(world, client_for, body):
    response = client_for(key=world.admin_key).post(
        "/api/keys", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] in ("invalid_json", "invalid_request_error")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/aliases/-1"),
        ("put", "/api/budgets/x"),
        ("delete", "/api/keys/1.5"),
        ("post", "/api/nothing-here"),
        ("patch", "/api/tenants/"),
    ],
)
def test_unknown_api_paths_are_a_json_404(world, client_for, method, path):
    """Also for a logged-in user sending an unsafe method without a CSRF token: a 404, not
    Django's HTML CSRF page."""
    for client in (client_for(key=world.admin_key), client_for(user=world.owner, csrf=True)):
        response = getattr(client, method)(path, {}, format="json")
        assert response.status_code == 404, response.content[:200]
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["type"] == "not_found"
        assert path in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("hint", "status"),
    [("¹", 404), ("٣", 404), ("9" * 30, 404), ("x" * 500, 404), ("\x00", 400), ("acme\x00", 400)],
)
def test_odd_tenant_hints_are_a_4xx(world, client_for, hint, status):
    """'¹'.isdigit() is true but int('¹') raises, '٣' is 3 to int(); PostgreSQL refuses NUL in
    text: 500s (or another tenant's id) before."""
    for client in (
        client_for(user=world.owner),
        client_for(user=world.support),
        client_for(key=world.admin_key),
    ):
        response = client.get("/api/aliases", {"tenant": hint})
        assert response.status_code == status, response.content[:300]
        assert response.json()["error"]["type"] in ("not_found", "invalid_request_error")


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("get", "/api/audit?action=key%00", "action"),
        ("get", "/api/providers/{provider}/models?search=a%00", "search"),
        ("put", "/api/providers/{provider}/models/a%00b/enable", "model_id"),
        ("get", "/api/usage?model=a%00", "model"),
    ],
)
def test_nul_in_a_query_or_path_is_a_400_naming_it(world, client_for, method, path, name):
    """PostgreSQL refuses NUL in text: these were 500s."""
    provider = provider_create(owner=world.tenant, data={"name": "own", "provider_type": "mock"})
    client = client_for(user=world.owner)
    path = path.format(provider=provider.pk)
    response = (
        client.put(path, {"enabled": True}, format="json") if method == "put" else client.get(path)
    )
    assert response.status_code == 400, response.content[:300]
    assert name in response.json()["error"]["fields"]
