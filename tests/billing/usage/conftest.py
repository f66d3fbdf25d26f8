"""Fixtures of the usage tests: the usage API's URLs on their own (tests/billing/usage/urls.py), the
sample catalog of providers and models for the world's tenant and the outsider, and a UTC helper."""

from datetime import UTC, datetime

import pytest

from tests.billing.usage.factories import Catalog, catalog_create


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _usage_urls(settings):
    settings.ROOT_URLCONF = "tests.billing.usage.urls"


@pytest.fixture
def catalog(world) -> Catalog:
    return catalog_create(tenant=world.tenant, other=world.other)
