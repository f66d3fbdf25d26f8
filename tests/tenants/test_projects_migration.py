"""Upgrading to projects: migration tenants 0005 gives every existing tenant a ``default``
project and puts every existing key (live or revoked) in it; 0006 then makes the project
required. The test migrates tenants back to 0004, writes keys with that state's historical
models, and migrates forward again (the schema is restored whatever happens)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tenants.models import ApiKey, Project

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("tenants", "0004_seed_default_embedding_model")


@pytest.fixture
def before_projects():
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([BEFORE])
        yield executor.loader.project_state(BEFORE, at_end=True).apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_every_existing_key_joins_its_tenants_default_project(before_projects):
    Tenant = before_projects.get_model("tenants", "Tenant")
    OldKey = before_projects.get_model("tenants", "ApiKey")
    acme = Tenant.objects.create(slug="acme", name="Acme")
    other = Tenant.objects.create(slug="other", name="Other")
    Tenant.objects.create(slug="keyless", name="No keys yet")
    for n, tenant in enumerate([acme, acme, other]):
        OldKey.objects.create(tenant=tenant, name=f"k{n}", prefix=f"tg_{n}", key_hash=f"{n:064d}",
                              revoked_at=timezone.now() if n == 1 else None)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    projects = {p.tenant.slug: p for p in Project.objects.select_related("tenant")}
    assert set(projects) == {"acme", "other", "keyless"}
    assert all(p.slug == "default" and p.name == "Default" for p in projects.values())
    keys = list(ApiKey.objects.select_related("project", "tenant").order_by("name"))
    assert [(k.name, k.project.tenant.slug, k.project.slug) for k in keys] == [
        ("k0", "acme", "default"), ("k1", "acme", "default"), ("k2", "other", "default")]
    assert not ApiKey._meta.get_field("project").null
