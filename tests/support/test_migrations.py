"""Upgrading a database from the previous release's schema: ``migrate`` moves the support
permission from ``billing.view_all_tenants`` to ``support.view_all_tenants`` without losing a
holder or creating a second permission, and leaves the ledger as it was.

Each test migrates the test database back to the previous release's leaf migrations (our apps
only; Django's and third-party apps stay where they are), writes data with that state's
historical models, migrates forward to the latest, then runs post_migrate as ``migrate`` does.
The schema is restored at the end whatever happens."""

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps as global_apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from billing.models import Budget, TenantDaily, UsageDaily, UsageLog
from support.groups import SUPPORT_GROUP
from tenants.access import Principal
from tenants.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)

# The leaf migrations of the release before the support app existed. Our apps not listed here
# (support, and any app added since) are rolled back entirely.
PREVIOUS_RELEASE = {
    "billing": "0010_usage_dead_letters_and_wider_sums",
    "providers": "0005_price_bounds",
    "tenants": "0002_retention_and_conversation_index",
}
OLD_PERM, NEW_PERM = "billing.view_all_tenants", "support.view_all_tenants"
COST = Decimal("0.000123456789")


def _our_apps(executor: MigrationExecutor) -> set[str]:
    base = Path(settings.BASE_DIR).resolve()
    labels = {label for label, _ in executor.loader.graph.leaf_nodes()}
    return {label for label in labels if Path(global_apps.get_app_config(label).path).resolve().parent == base}


def _migrate_to_previous_release():
    """Migrate back; answers the historical apps of that state."""
    executor = MigrationExecutor(connection)
    ours = _our_apps(executor)
    assert set(PREVIOUS_RELEASE) <= ours
    targets = [(label, PREVIOUS_RELEASE.get(label)) for label in sorted(ours)]
    executor.migrate(targets)
    # The state at those leaves, from the migration graph: the one migrate() answers after
    # rolling several apps back keeps what later migrations of an app rolled back first added
    # (billing 0012's UsageLog.api, when support's migrations are unapplied last).
    others = [(label, name) for label, name in executor.loader.graph.leaf_nodes() if label not in ours]
    return executor.loader.project_state([*others, *PREVIOUS_RELEASE.items()], at_end=True).apps


def _migrate_to_latest() -> None:
    """Migrate forward, then send post_migrate as ``migrate`` does (content types, permissions,
    the support group)."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
    ContentType.objects.clear_cache()


@pytest.fixture
def previous_release():
    """The test database at the previous release's schema; the latest schema again afterwards."""
    try:
        yield _migrate_to_previous_release()
    finally:
        _migrate_to_latest()


def _old_permission(old_apps):
    """billing.view_all_tenants as the previous release's post_migrate left it, and the
    support group holding it."""
    ContentType_ = old_apps.get_model("contenttypes", "ContentType")
    Permission_ = old_apps.get_model("auth", "Permission")
    content_type, _ = ContentType_.objects.get_or_create(app_label="billing", model="billingaccess")
    perm, _ = Permission_.objects.get_or_create(
        content_type=content_type, codename="view_all_tenants",
        defaults={"name": "Can read every tenant's usage, costs and settings"})
    group, _ = old_apps.get_model("auth", "Group").objects.get_or_create(name=SUPPORT_GROUP)
    group.permissions.add(perm)
    return perm, group


def _staff(old_apps, username: str):
    return old_apps.get_model("auth", "User").objects.create(username=username, password="!", is_staff=True)


def _fresh(username: str):
    return get_user_model().objects.get(username=username)  # no permission cache


def test_upgrade_keeps_every_holder_of_the_support_permission_and_the_ledger(previous_release):
    # given the previous release: a staff user holding billing.view_all_tenants directly, one in
    # the support group, plain staff, and a tenant with ledger rows, rollups and a budget
    old_apps = previous_release
    perm, group = _old_permission(old_apps)
    direct, grouped, plain = (_staff(old_apps, name) for name in ("direct", "grouped", "plain"))
    direct.user_permissions.add(perm)
    grouped.groups.add(group)
    tenant = old_apps.get_model("tenants", "Tenant").objects.create(slug="before", name="Before", timezone="UTC")
    old_apps.get_model("billing", "UsageLog").objects.create(
        request_id="req-before", tenant=tenant, status="ok", input_tokens=10, output_tokens=5, cost=COST)
    old_apps.get_model("billing", "UsageDaily").objects.create(
        tenant=tenant, day=date(2026, 3, 1), requests=1, input_tokens=10, output_tokens=5, cost=COST)
    old_apps.get_model("billing", "TenantDaily").objects.create(tenant=tenant, day=date(2026, 3, 1), requests=1,
                                                                cost=COST)
    old_apps.get_model("billing", "Budget").objects.create(tenant=tenant, name="monthly", amount=Decimal("50"))

    # when the database is migrated and post_migrate runs
    _migrate_to_latest()

    # then both holders are support staff under the new name, plain staff is not
    for username in ("direct", "grouped"):
        user = _fresh(username)
        assert user.has_perm(NEW_PERM) and not user.has_perm(OLD_PERM), username
        assert Principal(user=user).is_support, username
    assert not _fresh("plain").has_perm(NEW_PERM) and not Principal(user=_fresh("plain")).is_support
    # the same permission row moved (no second one was created), and the old content type is gone
    [moved] = Permission.objects.filter(codename="view_all_tenants")
    assert moved.pk == perm.pk and (moved.content_type.app_label, moved.content_type.model) == (
        "support", "supportaccess")
    assert not ContentType.objects.filter(app_label="billing", model="billingaccess").exists()
    assert Group.objects.get(name=SUPPORT_GROUP).permissions.filter(pk=moved.pk).exists()
    # and the ledger, the rollups and the budget are as they were
    row = UsageLog.objects.get(request_id="req-before")
    assert (row.tenant.slug, row.input_tokens, row.output_tokens, row.cost) == ("before", 10, 5, COST)
    assert row.api == "chat"  # the door column came later; rows before it read as chat
    before = Tenant.objects.get(slug="before")
    assert UsageDaily.objects.get(tenant=before).cost == COST
    assert TenantDaily.objects.get(tenant=before).cost == COST
    assert Budget.objects.get(tenant=before).amount == Decimal("50")


def test_a_fresh_database_gets_the_permission_from_post_migrate(previous_release):
    # given a database where the previous release's post_migrate never ran (no permission yet)
    old_apps = previous_release
    old_apps.get_model("contenttypes", "ContentType").objects.filter(
        app_label__in=["billing", "support"], model__in=["billingaccess", "supportaccess"]).delete()

    # when it is migrated and post_migrate runs
    _migrate_to_latest()

    # then the permission exists once, under support, and the support group holds it
    [perm] = Permission.objects.filter(codename="view_all_tenants")
    assert perm.content_type.app_label == "support"
    assert Group.objects.get(name=SUPPORT_GROUP).permissions.filter(pk=perm.pk).exists()


def test_holders_of_both_rows_keep_the_permission_when_both_exist(previous_release):
    # given the old permission with a holder, and the new one already created by a post_migrate
    # that ran before the data migration, held by someone else
    old_apps = previous_release
    perm, _ = _old_permission(old_apps)
    ContentType_ = old_apps.get_model("contenttypes", "ContentType")
    twin = old_apps.get_model("auth", "Permission").objects.create(
        content_type=ContentType_.objects.create(app_label="support", model="supportaccess"),
        codename="view_all_tenants", name="Can read every tenant's usage, costs and settings")
    _staff(old_apps, "old-holder").user_permissions.add(perm)
    _staff(old_apps, "new-holder").user_permissions.add(twin)

    # when the database is migrated and post_migrate runs
    _migrate_to_latest()

    # then one permission is left and both hold it, as does the support group
    [kept] = Permission.objects.filter(codename="view_all_tenants")
    assert kept.pk == twin.pk
    assert _fresh("old-holder").has_perm(NEW_PERM) and _fresh("new-holder").has_perm(NEW_PERM)
    assert Group.objects.get(name=SUPPORT_GROUP).permissions.filter(pk=kept.pk).exists()
    assert not ContentType.objects.filter(app_label="billing", model="billingaccess").exists()


def test_migrating_back_returns_the_permission_to_billing(django_user_model):
    # given support staff on the latest schema
    user = django_user_model.objects.create(username="latest", is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="support", codename="view_all_tenants"))
    try:
        # when the database is migrated back to the previous release
        _migrate_to_previous_release()
        ContentType.objects.clear_cache()
        # then the same user holds billing.view_all_tenants there
        assert _fresh("latest").has_perm(OLD_PERM)
    finally:
        _migrate_to_latest()
    assert _fresh("latest").has_perm(NEW_PERM)
