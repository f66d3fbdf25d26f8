"""The adapter registry (providers/adapters/registry.py): one entry per provider type, the mock
an ordinary one, each offering the interface the engine calls; and the adapters stay free of
Django and of every app, so they load without settings."""

import subprocess
import sys
from pathlib import Path

import pytest

from providers.adapters.registry import ADAPTERS
from providers.models import ProviderType

HTTP_FUNCTIONS = ("build_chat", "parse_chat", "stream_translator", "build_embeddings", "parse_embeddings",
                  "parse_error")
IN_PROCESS_FUNCTIONS = ("complete_chat", "stream_chat", "embed")


def test_every_provider_type_has_an_adapter_and_nothing_else_does():
    assert set(ADAPTERS) == set(ProviderType.values)


def test_the_mock_is_an_ordinary_entry_that_answers_in_process():
    mock = ADAPTERS[ProviderType.MOCK]
    assert mock.IN_PROCESS is True and mock.DEFAULT_MAX_TOKENS is None
    assert all(callable(getattr(mock, name)) for name in IN_PROCESS_FUNCTIONS)


@pytest.mark.parametrize("kind", sorted(set(ProviderType.values) - {ProviderType.MOCK}))
def test_every_http_adapter_offers_what_the_engine_calls(kind):
    adapter = ADAPTERS[kind]
    assert adapter.IN_PROCESS is False
    assert all(callable(getattr(adapter, name)) for name in HTTP_FUNCTIONS)
    # Only the Messages API needs a limit the request did not set.
    assert adapter.DEFAULT_MAX_TOKENS == (4096 if kind == ProviderType.ANTHROPIC else None)


def test_the_adapters_import_neither_django_nor_any_app():
    modules = sorted(f"providers.adapters.{p.stem}" for p in Path(ADAPTERS["mock"].__file__).parent.glob("*.py"))
    assert "providers.adapters.registry" in modules and "providers.adapters.anthropic" in modules
    script = (
        "import os, sys\n"
        "os.environ.pop('DJANGO_SETTINGS_MODULE', None)\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "outside = ('django', 'rest_framework', 'tenants', 'billing', 'gateway', 'config')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in outside\n"
        "             or (m.startswith('providers.') and not m.startswith('providers.adapters'))))\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
