"""The console fixtures (acme with providers, a budget and keys; the outsider ``other``),
shared with tests/config/console."""

from tests.config.console.conftest import console, login  # noqa: F401  (fixtures)
