"""Brute-force protection on both login pages (django-axes): after LOGIN_FAILURE_LIMIT failures
a username, and separately a client address, is locked out for LOGIN_LOCKOUT_MINUTES, with a
message on the login page; staff unlock with `manage.py axes_reset_*`. The address is the
one the ASGI server reports: X-Forwarded-For counts only from a proxy it trusts."""

import re
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from tests.utils.procs import REPO, embedded_env

pytestmark = pytest.mark.django_db

LIMIT = 3
PAGES = {"console": "/accounts/login/", "admin": "/admin/login/"}


@pytest.fixture(autouse=True)
def _limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


@pytest.fixture
def staff(db):
    """Someone who may log in to both pages."""
    return get_user_model().objects.create_superuser(
        "root@tollgate.test", "root@tollgate.test", "right"
    )


def attempt(page: str, username: str, password: str, address: str, **headers):
    return Client().post(
        PAGES[page], {"username": username, "password": password}, REMOTE_ADDR=address, **headers
    )


def assert_logged_in(response):
    assert response.status_code == 302, response.content.decode()[:500]


def assert_locked_out(response, minutes: int | None = 15):
    page = response.content.decode()
    assert response.status_code == 429, page[:500]
    assert "Too many failed login attempts" in page and "contact support" in page
    if minutes is None:
        assert "try again in" not in page
    else:
        assert f"try again in {minutes} minutes" in page
    assert 'name="password"' in page  # still the login page, with its form


@pytest.mark.parametrize("page", ["console", "admin"])
def test_after_the_limit_even_the_right_password_is_refused(staff, page):
    for _ in range(LIMIT - 1):
        response = attempt(page, staff.username, "wrong", "10.0.0.1")
        assert response.status_code == 200  # a plain "wrong password" until the limit
    assert_locked_out(attempt(page, staff.username, "wrong", "10.0.0.1"))
    assert_locked_out(attempt(page, staff.username, "right", "10.0.0.1"))
    # the username is locked from any address
    assert_locked_out(attempt(page, staff.username, "right", "10.0.0.2"))


@pytest.mark.parametrize("page", ["console", "admin"])
def test_a_different_user_from_another_address_is_not_affected(staff, page):
    other = get_user_model().objects.create_superuser(
        "ops@tollgate.test", "ops@tollgate.test", "also-right"
    )
    for _ in range(LIMIT):
        attempt(page, staff.username, "wrong", "10.0.0.1")
    assert_logged_in(attempt(page, other.username, "also-right", "10.0.0.9"))


def test_an_address_that_guesses_many_usernames_is_locked_for_all_of_them(staff):
    for i in range(LIMIT):
        attempt("console", f"guess{i}@example.test", "wrong", "10.0.0.1")
    assert_locked_out(attempt("console", staff.username, "right", "10.0.0.1"))
    assert_logged_in(attempt("console", staff.username, "right", "10.0.0.2"))


def test_x_forwarded_for_does_not_change_the_address_by_itself(staff):
    for i in range(LIMIT):
        attempt(
            "console",
            f"guess{i}@example.test",
            "wrong",
            "10.0.0.1",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        )
    assert_locked_out(
        attempt(
            "console", staff.username, "right", "10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.77"
        )
    )


@pytest.mark.parametrize("minutes", [42, None])
def test_the_lockout_lasts_the_configured_minutes_or_until_unlocked(staff, settings, minutes):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=minutes) if minutes else None
    for _ in range(LIMIT):
        attempt("console", staff.username, "wrong", "10.0.0.1")
    assert_locked_out(attempt("console", staff.username, "right", "10.0.0.1"), minutes=minutes)


@pytest.mark.parametrize("minutes, cool_off", [("0", "None"), ("30", "0:30:00")])
def test_limit_and_lockout_come_from_the_environment(tmp_path, minutes, cool_off):
    code = "from django.conf import settings as s; print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME)"
    env = embedded_env(
        tmp_path, DEBUG="true", LOGIN_FAILURE_LIMIT="7", LOGIN_LOCKOUT_MINUTES=minutes
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.splitlines()[-1].split() == ["7", cool_off], result.stderr


@pytest.mark.parametrize(
    "command, args",
    [
        ("axes_reset_username", ["root@tollgate.test"]),
        ("axes_reset_ip", ["10.0.0.1"]),
        ("axes_reset", []),
    ],
)
def test_staff_unlock_with_a_command(staff, command, args):
    for _ in range(LIMIT):
        attempt("admin", staff.username, "wrong", "10.0.0.1")
    assert_locked_out(attempt("admin", staff.username, "right", "10.0.0.1"))
    call_command(command, *args)
    assert_logged_in(attempt("admin", staff.username, "right", "10.0.0.1"))


def test_staff_unlock_in_the_admin(staff):
    from axes.models import AccessAttempt

    for _ in range(LIMIT):
        attempt("console", staff.username, "wrong", "10.0.0.1")
    other_root = get_user_model().objects.create_superuser(
        "ops@tollgate.test", "ops@tollgate.test", "x"
    )
    admin_page = Client()
    admin_page.force_login(other_root)
    listed = admin_page.get("/admin/axes/accessattempt/")
    assert listed.status_code == 200 and staff.username in listed.content.decode()
    ids = list(AccessAttempt.objects.values_list("pk", flat=True))
    response = admin_page.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert response.status_code == 302
    assert_logged_in(attempt("console", staff.username, "right", "10.0.0.1"))


def test_force_login_and_api_keys_are_unaffected(world, client_for):
    """force_login (used by the other tests) and API keys do not go through authenticate()."""
    assert client_for(user=world.owner).get("/api/keys").status_code == 200
    assert client_for(key=world.admin_key).get("/api/keys").status_code == 200


# --- through the real server: the address comes from uvicorn ------------------------------------


def live_attempt(
    live, username: str, password: str, *, source: str, forwarded_for: str | None = None
):
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=live.url, transport=transport, timeout=10) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        return client.post(
            "/accounts/login/",
            headers=headers,
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        )


@pytest.mark.django_db(transaction=True)
def test_through_the_server_an_untrusted_client_cannot_escape_with_x_forwarded_for(live, staff):
    # 127.0.0.2 is not a proxy uvicorn trusts (FORWARDED_ALLOW_IPS): its X-Forwarded-For is ignored.
    for i in range(LIMIT):
        attempt_ = live_attempt(
            live,
            f"guess{i}@example.test",
            "wrong",
            source="127.0.0.2",
            forwarded_for=f"198.51.100.{i}",
        )
        assert attempt_.status_code in (200, 429)
    locked = live_attempt(
        live, staff.username, "right", source="127.0.0.2", forwarded_for="198.51.100.99"
    )
    assert_locked_out(locked)
    # From the trusted proxy address (127.0.0.1 by default), the forwarded client is the address.
    response = live_attempt(
        live, staff.username, "right", source="127.0.0.1", forwarded_for="198.51.100.99"
    )
    assert response.status_code == 302 and response.headers["location"] == "/app/"
