"""Bad input to any /api route is a 4xx in the {"error": {"type", "message", "fields"?}} shape,
never a 500: the shared JSON parser, the exception handler and the JSON 404 for unknown paths.
(tests/test_openapi.py fuzzes every route; these are the cases fuzzing found, by name.)"""

import pytest

pytestmark = pytest.mark.django_db

DEEP = "[" * 10_000 + "]" * 10_000
JSON_ROUTES = ["/api/providers/test", "/api/test/llm", "/api/aliases", "/api/budgets", "/api/keys",
               "/api/providers"]


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_deeply_nested_json_is_a_400(world, client_for, path):
    response = client_for(key=world.admin_key).post(path, DEEP, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_json"
    assert "nested more than 32 levels" in error["message"]


def test_nesting_under_the_limit_reaches_the_serializer(world, client_for):
    body = '{"name": ' + "[" * 30 + "]" * 30 + "}"
    response = client_for(key=world.admin_key).post("/api/keys", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"name": ["Expected a string, got an array."]}


@pytest.mark.parametrize("body", ['{"name": NaN}', '{"name": Infinity}', b'{"name": "\xff"}', "{", ""])
def test_bodies_that_are_not_json_are_a_400(world, client_for, body):
    response = client_for(key=world.admin_key).post("/api/keys", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] in ("invalid_json", "invalid_request_error")


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/aliases/-1"), ("put", "/api/budgets/x"), ("delete", "/api/keys/1.5"),
    ("post", "/api/nothing-here"), ("patch", "/api/tenants/"),
])
def test_unknown_api_paths_are_a_json_404(world, client_for, method, path):
    """Also for a logged-in user sending an unsafe method without a CSRF token: a 404, not
    Django's HTML CSRF page."""
    for client in (client_for(key=world.admin_key), client_for(user=world.owner, csrf=True)):
        response = getattr(client, method)(path, {}, format="json")
        assert response.status_code == 404, response.content[:200]
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["type"] == "not_found"
        assert path in response.json()["error"]["message"]
