"""A gemini provider's options (providers/options.py): ``auth`` api-key or vertex, and with
vertex a ``project`` / ``location`` whose Vertex AI root becomes the base URL when none is given
(providers/base_urls.py gemini_base_url), kept in step when they change; refused with words
that say what to fix."""

import pytest

from core.errors import InvalidInput
from providers.options import options_clean
from providers.services import provider_create, provider_probe, provider_update
from tenants.access import SYSTEM

VERTEX_EU = "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-prod/locations/europe-west4/publishers/google"
VERTEX_US = "https://us-central1-aiplatform.googleapis.com/v1/projects/acme-prod/locations/us-central1/publishers/google"


def test_options_are_checked_and_normalised():
    assert options_clean("gemini", None) == {}
    assert options_clean("gemini", {"auth": "api-key"}) == {"auth": "api-key"}
    assert options_clean("gemini", {"auth": "vertex", "project": " Acme-Prod ", "location": "EUROPE-west4"}) == {
        "auth": "vertex", "project": "acme-prod", "location": "europe-west4"}


@pytest.mark.parametrize(("options", "field", "words"), [
    ({"auth": "oauth"}, "options", "must be 'api-key'"),
    ({"project": "acme", "location": "us-central1"}, "options", "set options.auth to 'vertex'"),
    ({"auth": "vertex", "project": "acme"}, "options", "both options.project and options.location"),
    ({"auth": "vertex", "project": "acme_prod!", "location": "us-central1"}, "options.project", "lower-case"),
    ({"auth": "vertex", "region": "x"}, "options", "Unknown option 'region'"),
])
def test_bad_options_say_what_to_fix(options, field, words):
    with pytest.raises(InvalidInput) as caught:
        options_clean("gemini", options)
    assert caught.value.field == field and words in caught.value.message


@pytest.mark.django_db
def test_vertex_project_and_location_build_the_base_url_and_follow_a_change(world):
    provider = provider_create(owner=world.tenant, actor=SYSTEM, data={
        "name": "vx", "provider_type": "gemini", "api_key": "ya29.token",
        "options": {"auth": "vertex", "project": "acme-prod", "location": "europe-west4"}})
    assert provider.base_url == VERTEX_EU
    # A new location moves the URL; the token goes to the new address only when sent again.
    with pytest.raises(InvalidInput) as caught:
        provider_update(provider=provider, actor=SYSTEM, data={"options": {"location": "us-central1"}})
    assert caught.value.field == "api_key"
    provider = provider_update(provider=provider, actor=SYSTEM,
                               data={"options": {"location": "us-central1"}, "api_key": "ya29.other"})
    assert provider.base_url == VERTEX_US and provider.options["location"] == "us-central1"
    global_ = provider_create(owner=world.tenant, actor=SYSTEM, data={
        "name": "vx-global", "provider_type": "gemini",
        "options": {"auth": "vertex", "project": "acme-prod", "location": "global"}})
    assert global_.base_url == ("https://aiplatform.googleapis.com/v1/projects/acme-prod/locations/global"
                                "/publishers/google")


@pytest.mark.django_db
def test_a_given_base_url_wins_and_an_api_key_provider_keeps_the_gemini_api(world):
    given = provider_create(owner=world.tenant, actor=SYSTEM, data={
        "name": "vx", "provider_type": "gemini", "base_url": VERTEX_US,
        "options": {"auth": "vertex", "project": "acme-prod", "location": "europe-west4"}})
    assert given.base_url == VERTEX_US
    plain = provider_create(owner=world.tenant, actor=SYSTEM, data={"name": "gem", "provider_type": "gemini"})
    assert plain.base_url == "https://generativelanguage.googleapis.com/v1beta" and plain.options == {}


@pytest.mark.django_db
def test_vertex_auth_needs_a_vertex_url(world):
    with pytest.raises(InvalidInput) as caught:
        provider_create(owner=world.tenant, actor=SYSTEM, data={
            "name": "vx", "provider_type": "gemini", "options": {"auth": "vertex"}})
    assert caught.value.field == "options" and "options.project and options.location" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        provider_create(owner=world.tenant, actor=SYSTEM, data={
            "name": "vx", "provider_type": "gemini", "base_url": "https://generativelanguage.googleapis.com",
            "options": {"auth": "vertex"}})
    assert caught.value.field == "base_url" and "not a Vertex AI URL" in caught.value.message


def test_a_connection_test_builds_the_same_url():
    probe = provider_probe(saved=None, base_url="", provider_type="gemini", api_key="ya29.token", extra_headers={},
                           timeout_seconds=5, options={"auth": "vertex", "project": "acme-prod",
                                                       "location": "europe-west4"})
    assert probe.base_url == VERTEX_EU and probe.options["auth"] == "vertex"


@pytest.mark.django_db
def test_a_gemini_api_provider_going_vertex_gets_the_vertex_url_and_vertex_needs_a_vertex_url(world):
    provider = provider_create(owner=world.tenant, actor=SYSTEM, data={"name": "gem", "provider_type": "gemini"})
    with pytest.raises(InvalidInput) as caught:
        provider_update(provider=provider, actor=SYSTEM, data={"options": {"auth": "vertex"}})
    assert caught.value.field == "base_url" and "not a Vertex AI URL" in caught.value.message
    provider = provider_update(provider=provider, actor=SYSTEM, data={
        "options": {"auth": "vertex", "project": "acme-prod", "location": "europe-west4"}})
    assert provider.base_url == VERTEX_EU
    # Back to an API key: the options say so, and a Gemini API URL is given with the new key.
    provider = provider_update(provider=provider, actor=SYSTEM, data={
        "options": {"auth": "api-key", "project": None, "location": None}, "api_key": "AIzaKey",
        "base_url": "https://generativelanguage.googleapis.com"})
    assert provider.base_url == "https://generativelanguage.googleapis.com/v1beta"
    assert provider.options == {"auth": "api-key"}
