"""The providers' management commands: discover_providers reads every documented variable and is
idempotent; rotate_encryption_key moves every stored secret to the new key."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from providers.discovery import discover
from providers.models import Provider
from providers.services import provider_create

pytestmark = pytest.mark.django_db


def test_discovery_reads_every_documented_variable():
    env = {
        "OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "OPENROUTER_API_KEY": "sk-or",
        "OPENROUTER_BASE_URL": "https://openrouter.example/api/v1", "FIREWORKS_API_KEY": "fw",
        "DEEPSEEK_API_KEY": "ds", "XAI_API_KEY": "xai", "OLLAMA_HOST": "gpu-box", "OLLAMA_PORT": "11500",
        "PROVIDER_LOCAL_VLLM_URL": "http://10.0.0.5:8000/v1", "PROVIDER_LOCAL_VLLM_KEY": "k",
        "PROVIDER_EMPTY_URL": "",
    }
    found = {d.name: d for d in discover(env)}
    assert set(found) == {"openai", "anthropic", "openrouter", "fireworks", "deepseek", "xai", "ollama", "local-vllm"}
    assert found["openrouter"].base_url == "https://openrouter.example/api/v1"
    assert found["ollama"].base_url == "http://gpu-box:11500"
    assert (found["local-vllm"].base_url, found["local-vllm"].api_key, found["local-vllm"].provider_type) == (
        "http://10.0.0.5:8000/v1", "k", None)
    assert discover({"OLLAMA_BASE_URL": "http://127.0.0.1:11434"})[0].provider_type == "ollama"


def test_discover_providers_is_idempotent(monkeypatch):
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-1234567")
    monkeypatch.setenv("PROVIDER_LOCAL_URL", "http://127.0.0.1:11434")
    out = StringIO()
    call_command("discover_providers", stdout=out)
    assert "created   deepseek (openai_compatible)" in out.getvalue()
    assert "created   local (ollama)" in out.getvalue()
    assert "sk-deepseek" not in out.getvalue()
    out = StringIO()
    call_command("discover_providers", stdout=out)
    assert out.getvalue().count("unchanged") == 2
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-rotated")
    out = StringIO()
    call_command("discover_providers", stdout=out)
    assert "updated   deepseek" in out.getvalue()
    assert Provider.objects.filter(owner__isnull=True).count() == 2
    assert Provider.objects.get(name="deepseek").api_key == "sk-deepseek-rotated"


def test_openai_org_id_is_the_organization_header(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-1234567")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-acme")
    call_command("discover_providers", stdout=StringIO())
    provider = Provider.objects.get(owner__isnull=True, name="openai")
    assert provider.upstream_extra_headers() == (("OpenAI-Organization", "org-acme"),)
    out = StringIO()
    call_command("discover_providers", stdout=out)
    assert "unchanged openai" in out.getvalue()
    monkeypatch.delenv("OPENAI_ORG_ID")  # unset: the header stays as it is (staff may have set their own)
    out = StringIO()
    call_command("discover_providers", stdout=out)
    assert "unchanged openai" in out.getvalue()
    assert Provider.objects.get(pk=provider.pk).extra_headers == {"OpenAI-Organization": "org-acme"}


def test_rotation_moves_every_secret_to_the_new_key(world, settings):
    old = settings.ENCRYPTION_KEYS[0]
    provider = provider_create(owner=world.tenant, data={"name": "p", "base_url": "http://127.0.0.1:9/v1",
                                                         "api_key": "sk-rotate-me-0001",
                                                         "extra_headers": {"X-Org": "o-1"}})
    new = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new, old]
    with pytest.raises(CommandError, match="still need an older key"):
        call_command("rotate_encryption_key", "--check", stdout=StringIO())

    out = StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "re-encrypted the secrets of 1 provider" in out.getvalue()

    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key, extra_headers FROM providers_provider WHERE id = %s", [provider.pk])
        token, headers = cursor.fetchone()
    assert Fernet(new.encode()).decrypt(token.encode()) == b"sk-rotate-me-0001"
    assert b"o-1" in Fernet(new.encode()).decrypt(headers.encode())
    settings.ENCRYPTION_KEYS = [new]  # the old key is gone and nothing needs it
    again = Provider.objects.get(pk=provider.pk)
    assert again.api_key == "sk-rotate-me-0001" and again.extra_headers == {"X-Org": "o-1"}
    call_command("rotate_encryption_key", "--check", stdout=StringIO())
