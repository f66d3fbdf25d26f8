"""Writes. Each service validates, changes rows in one transaction and records an audit
event beside the change."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import Conflict, InvalidInput
from core.redis import REDIS_DOWN
from tenants.access import SYSTEM, Principal
from tenants.config_version import config_changed
from tenants.keys import key_generate, key_hash, key_visible_prefix
from tenants.models import (
    DEFAULT_PROJECT_SLUG,
    PROJECT_ROLES,
    ApiKey,
    AuditEvent,
    KeyScope,
    Membership,
    MembershipSource,
    Project,
    ProjectMembership,
    Role,
    Tenant,
)
from tenants.selectors import project_default

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$")

# Tenant fields that the settings API may change, with the audit name of each.
TENANT_SETTING_FIELDS = (
    "name",
    "timezone",
    "default_model",
    "default_embedding_model",
    "temperature",
    "max_tokens",
    "top_p",
    "requests_per_minute",
    "tokens_per_minute",
    "tokens_per_day",
    "redis_outage",
    "cache_enabled",
    "cache_ttl_seconds",
    "usage_retention_days",
)


def audit_record(
    *,
    actor: Principal,
    action: str,
    tenant: Tenant | None,
    target: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        tenant=tenant, actor=actor.label, action=action, target=target, before=before, after=after
    )


# Steps of tenant_create that belong to the apps above this one (tenants/ imports only core):
# ``step(tenant=, actor=)``, run inside its transaction. The providers app registers the
# platform's default models for new tenants (LLM_PROVIDER, EMBEDDINGS_PROVIDER; providers/apps.py).
TENANT_CREATE_STEPS: list[Callable[..., None]] = []

# Checks of a project's default model, which needs the providers app (the aliases and models its
# keys may use): ``check(tenant=, project=, name=)`` raising InvalidInput; ``project`` is None for
# a project being created. The providers app registers its check (providers/apps.py).
PROJECT_DEFAULT_MODEL_CHECKS: list[Callable[..., None]] = []
# The same for the tenant's default models (every key's): ``check(tenant=, name=, field=)``, field
# "default_model" or "default_embedding_model". A default that does not change (a stale one, its
# model since dropped by a catalog sync) is not checked again.
TENANT_DEFAULT_MODEL_CHECKS: list[Callable[..., None]] = []


def platform_defaults() -> dict[str, Any]:
    """The tenant fields a new tenant takes from the environment (LLM_TEMPERATURE,
    LLM_MAX_TOKENS); the default models need the providers app (TENANT_CREATE_STEPS)."""
    values = {"temperature": settings.LLM_TEMPERATURE, "max_tokens": settings.LLM_MAX_TOKENS}
    return {field: value for field, value in values.items() if value is not None}


@dataclass(frozen=True)
class TenantCreated:
    tenant: Tenant
    owner: Any | None
    chat_key: str
    admin_key: str


def tenant_create(
    *,
    slug: str,
    name: str,
    admin_email: str | None = None,
    actor: Principal = SYSTEM,
) -> TenantCreated:
    """A new tenant with a chat key and an admin key, and an owner when an email is given
    (the user is created with an unusable password if it does not exist yet). It starts with the
    platform's defaults (platform_defaults, then TENANT_CREATE_STEPS)."""
    slug = slug.strip()
    name = name.strip()
    if not SLUG_RE.match(slug):
        raise InvalidInput(
            f"Invalid slug '{slug}': use 1-50 lowercase letters, digits and hyphens, starting "
            "and ending with a letter or digit.",
            field="slug",
        )
    if not name:
        raise InvalidInput("Tenant name must not be empty.", field="name")
    if len(name) > 200:
        raise InvalidInput("Tenant name is longer than 200 characters.", field="name")
    if Tenant.objects.filter(slug=slug).exists():
        raise Conflict(f"A tenant with slug '{slug}' already exists.", field="slug")

    with transaction.atomic():
        try:
            defaults = platform_defaults()
            tenant = Tenant.objects.create(slug=slug, name=name, **defaults)
        except IntegrityError as exc:  # lost a race with another creator of the same slug
            raise Conflict(f"A tenant with slug '{slug}' already exists.", field="slug") from exc
        owner = None
        if admin_email:
            owner = user_get_or_create_by_email(email=admin_email)
            Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
        audit_record(
            actor=actor,
            action="tenant.create",
            tenant=tenant,
            target=f"tenant:{slug}",
            after={"slug": slug, "name": name, "owner": admin_email or None, **defaults},
        )
        project_create(tenant=tenant, slug=DEFAULT_PROJECT_SLUG, name="Default", actor=actor)
        for step in TENANT_CREATE_STEPS:
            step(tenant=tenant, actor=actor)
        _, chat_raw = api_key_create(
            tenant=tenant, name="default chat key", scope=KeyScope.CHAT, actor=actor, created_by=owner
        )
        _, admin_raw = api_key_create(
            tenant=tenant, name="default admin key", scope=KeyScope.ADMIN, actor=actor, created_by=owner
        )
    return TenantCreated(tenant=tenant, owner=owner, chat_key=chat_raw, admin_key=admin_raw)


def user_get_or_create_by_email(*, email: str):
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput(f"'{email}' is not a valid email address.", field="admin_email") from None
    User = get_user_model()
    user = User.objects.filter(Q(email__iexact=email) | Q(username__iexact=email)).first()
    if user is None:
        user = User(username=email, email=email)
        user.set_unusable_password()
        user.save()
    return user


def tenant_update(*, tenant: Tenant, changes: dict[str, Any], actor: Principal) -> Tenant:
    """Apply already-validated field changes (names from TENANT_SETTING_FIELDS); a new default model
    or default embeddings model must pass TENANT_DEFAULT_MODEL_CHECKS."""
    unknown = set(changes) - set(TENANT_SETTING_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown tenant fields: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        before = {f: getattr(locked, f) for f in changes}
        for field in ("default_model", "default_embedding_model"):
            if changes.get(field) and changes[field] != getattr(locked, field):
                for check in TENANT_DEFAULT_MODEL_CHECKS:
                    check(tenant=locked, name=changes[field], field=field)
        for field, value in changes.items():
            setattr(locked, field, value)
        after = {f: getattr(locked, f) for f in changes}
        if before != after:
            locked.save(update_fields=[*changes, "updated_at"])
            audit_record(
                actor=actor,
                action="tenant.update",
                tenant=locked,
                target=f"tenant:{locked.slug}",
                before={k: v for k, v in before.items() if before[k] != after[k]},
                after={k: v for k, v in after.items() if before[k] != after[k]},
            )
    return locked


def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    scope: str = KeyScope.CHAT,
    expires_at: datetime | None = None,
    project: Project | None = None,
    actor: Principal,
    created_by=None,
) -> tuple[ApiKey, str]:
    """A new key and its raw value, which is never stored and never shown again. It belongs to
    ``project`` (one of ``tenant``'s), or to the tenant's default project."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Key name must not be empty.", field="name")
    if scope not in KeyScope.values:
        raise InvalidInput(f"Key scope must be one of: {', '.join(KeyScope.values)}.", field="scope")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at must be in the future.", field="expires_at")
    if project is None:
        project = project_default(tenant=tenant)
    elif project.tenant_id != tenant.pk:
        raise InvalidInput(f"Project '{project.slug}' is not a project of tenant '{tenant.slug}'.", field="project")
    raw = key_generate()
    with transaction.atomic():
        key = ApiKey.objects.create(
            tenant=tenant,
            project=project,
            name=name,
            scope=scope,
            prefix=key_visible_prefix(raw),
            key_hash=key_hash(raw),
            expires_at=expires_at,
            created_by=created_by if created_by is not None else actor.user,
        )
        audit_record(
            actor=actor,
            action="api_key.create",
            tenant=tenant,
            target=f"api_key:{key.pk}",
            after={"name": name, "scope": scope, "prefix": key.masked, "project": project.slug,
                   "expires_at": expires_at.isoformat() if expires_at else None},
        )
    return key, raw


def api_key_revoke(*, key: ApiKey, actor: Principal) -> ApiKey:
    """Revoke a key (idempotent). It stops working at once: the management API reads the
    database, and the data plane's next request sees the tenant's configuration change."""
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if updated:
            config_changed(tenant_id=key.tenant_id)
        key.refresh_from_db(fields=["revoked_at"])
        if updated:
            audit_record(
                actor=actor,
                action="api_key.revoke",
                tenant=key.tenant,
                target=f"api_key:{key.pk}",
                after={"prefix": key.masked, "revoked_at": key.revoked_at.isoformat()},
            )
    return key


API_KEY_LIMIT_FIELDS = ("allowed_models", "requests_per_minute", "tokens_per_minute", "tokens_per_day")


def api_key_limits_update(*, key: ApiKey, changes: dict[str, Any], actor: Principal) -> ApiKey:
    """Change a key's own restrictions (names from API_KEY_LIMIT_FIELDS, already validated):
    the models it may call (empty: the tenant's) and its rate limits (null: the tenant's)."""
    unknown = set(changes) - set(API_KEY_LIMIT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown key fields: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        before = {f: getattr(locked, f) for f in changes}
        for field, value in changes.items():
            setattr(locked, field, value)
        after = {f: getattr(locked, f) for f in changes}
        if before != after:
            locked.save(update_fields=list(changes))
            config_changed(tenant_id=locked.tenant_id)
            audit_record(
                actor=actor, action="api_key.update", tenant=locked.tenant, target=f"api_key:{locked.pk}",
                before={k: v for k, v in before.items() if before[k] != after[k]},
                after={k: v for k, v in after.items() if before[k] != after[k]},
            )
    return locked


def api_key_touch(*, key_id: int, tenant_id: int) -> datetime | None:
    """Record use, at most once per key per API_KEY_TOUCH_SECONDS across all workers (the /api
    and the /v1 side alike): the cache ``add`` elects one writer, and the conditional UPDATE
    never moves time backwards. The time written, or None when another writer had it. While
    the cache (Redis) is unreachable there is no election: every caller writes."""
    now = timezone.now()
    marker = f"t{tenant_id}:apikey:{key_id}:touched"
    try:
        elected = cache.add(marker, 1, timeout=settings.API_KEY_TOUCH_SECONDS)
    except REDIS_DOWN:
        elected = True
    if not elected:
        return None
    ApiKey.objects.filter(pk=key_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now)
    ).update(last_used_at=now)
    return now


def _user_by_email(email: str):
    """The user a membership is given to, by email (or username); InvalidInput otherwise."""
    email = (email or "").strip()
    user = get_user_model().objects.filter(Q(email__iexact=email) | Q(username__iexact=email)).first()
    if user is None:
        raise InvalidInput(
            f"No user with email '{email}'. Create the user first (Django admin or "
            "`createtenant --admin-email`), then add them.",
            field="email",
        )
    return user


def membership_add(
    *, tenant: Tenant, email: str, role: str, actor: Principal, source: str = MembershipSource.MANUAL
) -> Membership:
    """``source`` "sso": the SSO rules manage it (and take it back); "manual": only people remove it."""
    if role not in Role.values:
        raise InvalidInput(f"Role must be one of: {', '.join(Role.values)}.", field="role")
    user = _user_by_email(email)
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            tenant=tenant, user=user, defaults={"role": role, "source": source}
        )
        if not created:
            raise Conflict(
                f"{user.get_username()} is already a member of '{tenant.slug}' "
                f"(role {membership.role}); change the role instead.",
                field="email",
            )
        audit_record(
            actor=actor,
            action="membership.create",
            tenant=tenant,
            target=f"user:{user.get_username()}",
            after={"role": role},
        )
    return membership


def membership_set_role(*, membership: Membership, role: str, actor: Principal) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"Role must be one of: {', '.join(Role.values)}.", field="role")
    with transaction.atomic():
        locked = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
        if locked.role == role:
            return locked
        if locked.role == Role.OWNER:
            _ensure_another_owner(locked)
        before = locked.role
        locked.role = role
        locked.save(update_fields=["role"])
        audit_record(
            actor=actor,
            action="membership.update",
            tenant=locked.tenant,
            target=f"user:{locked.user.get_username()}",
            before={"role": before},
            after={"role": role},
        )
    return locked


def membership_remove(*, membership: Membership, actor: Principal) -> None:
    with transaction.atomic():
        locked = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
        if locked.role == Role.OWNER:
            _ensure_another_owner(locked)
        audit_record(
            actor=actor,
            action="membership.delete",
            tenant=locked.tenant,
            target=f"user:{locked.user.get_username()}",
            before={"role": locked.role},
        )
        locked.delete()


def _ensure_another_owner(membership: Membership) -> None:
    # Lock every owner row of the tenant (pk order) so two concurrent demotions cannot both
    # pass this check and leave the tenant without an owner.
    owners = list(
        Membership.objects.select_for_update()
        .filter(tenant_id=membership.tenant_id, role=Role.OWNER)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if [pk for pk in owners if pk != membership.pk]:
        return
    raise InvalidInput(
        f"'{membership.tenant.slug}' must keep at least one owner; make another member owner first.",
        field="role",
    )


# --- projects --------------------------------------------------------------------------------

# Project fields that the API may change after creation (the slug is fixed: keys and usage name it).
PROJECT_FIELDS = ("name", "default_model", "requests_per_minute", "tokens_per_minute", "tokens_per_day")


def _project_validated(changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(changes)
    if "name" in out:
        out["name"] = (out["name"] or "").strip()
        if not out["name"]:
            raise InvalidInput("Project name must not be empty.", field="name")
        if len(out["name"]) > 200:
            raise InvalidInput("Project name is longer than 200 characters.", field="name")
    if "default_model" in out:
        out["default_model"] = (out["default_model"] or "").strip()
    for field in ("requests_per_minute", "tokens_per_minute", "tokens_per_day"):
        if out.get(field) is not None and out[field] < 1:
            raise InvalidInput(f"{field} must be at least 1 (or null for no limit).", field=field)
    return out


def _project_default_model_check(*, tenant: Tenant, project: Project | None, name: str) -> None:
    for check in PROJECT_DEFAULT_MODEL_CHECKS:
        check(tenant=tenant, project=project, name=name)


def project_create(*, tenant: Tenant, slug: str, name: str, actor: Principal, **fields: Any) -> Project:
    """A new project of ``tenant``; ``fields`` from PROJECT_FIELDS (its default model, limits)."""
    slug = (slug or "").strip()
    if not SLUG_RE.match(slug) or slug.isdigit():
        raise InvalidInput(
            f"Invalid project slug '{slug}': use 1-50 lowercase letters, digits and hyphens, starting "
            "and ending with a letter or digit, with at least one letter (a number names a project by id).",
            field="slug",
        )
    unknown = set(fields) - set(PROJECT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown project fields: {', '.join(sorted(unknown))}.")
    values = _project_validated({"name": name, **fields})
    if values.get("default_model"):
        _project_default_model_check(tenant=tenant, project=None, name=values["default_model"])
    taken = Conflict(f"Tenant '{tenant.slug}' already has a project with slug '{slug}'.", field="slug")
    if Project.objects.filter(tenant=tenant, slug=slug).exists():
        raise taken
    with transaction.atomic():
        try:
            with transaction.atomic():
                project = Project.objects.create(tenant=tenant, slug=slug, **values)
        except IntegrityError as exc:  # lost a race with another creator of the same slug
            raise taken from exc
        audit_record(actor=actor, action="project.create", tenant=tenant, target=f"project:{slug}",
                     after={"slug": slug, **values})
    return project


def project_update(*, project: Project, changes: dict[str, Any], actor: Principal) -> Project:
    unknown = set(changes) - set(PROJECT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown project fields: {', '.join(sorted(unknown))}.")
    changes = _project_validated(changes)
    with transaction.atomic():
        locked = Project.objects.select_for_update().select_related("tenant").get(pk=project.pk)
        before = {f: getattr(locked, f) for f in changes}
        if changes.get("default_model") and changes["default_model"] != locked.default_model:
            _project_default_model_check(tenant=locked.tenant, project=locked, name=changes["default_model"])
        for field, value in changes.items():
            setattr(locked, field, value)
        after = {f: getattr(locked, f) for f in changes}
        if before != after:
            locked.save(update_fields=[*changes, "updated_at"])
            audit_record(
                actor=actor, action="project.update", tenant=locked.tenant, target=f"project:{locked.slug}",
                before={k: v for k, v in before.items() if before[k] != after[k]},
                after={k: v for k, v in after.items() if before[k] != after[k]},
            )
    return locked


def project_delete(*, project: Project, actor: Principal) -> None:
    """Delete a project that has no active key (refused otherwise, naming them). Its revoked
    and expired keys move to the default project; its ledger rows keep its id."""
    if project.is_default:
        raise InvalidInput(
            f"The default project of tenant '{project.tenant.slug}' cannot be deleted: keys created without "
            "a project go there.",
            field="project",
        )
    with transaction.atomic():
        locked = Project.objects.select_for_update().select_related("tenant").get(pk=project.pk)
        keys = list(ApiKey.objects.select_for_update().filter(project=locked).order_by("pk"))
        now = timezone.now()
        active = [k for k in keys if k.revoked_at is None and (k.expires_at is None or k.expires_at > now)]
        if active:
            names = ", ".join(f"{k.name} ({k.masked})" for k in active[:10])
            raise Conflict(
                f"Project '{locked.slug}' still has {len(active)} active API key(s): {names}. Revoke them "
                "first (DELETE /api/keys/{id}), then delete the project.",
                field="project",
            )
        default = project_default(tenant=locked.tenant)
        moved = ApiKey.objects.filter(project=locked).update(project=default)
        audit_record(
            actor=actor, action="project.delete", tenant=locked.tenant, target=f"project:{locked.slug}",
            before={"slug": locked.slug, "name": locked.name},
            after={"inactive_keys_moved_to_default": moved} if moved else None,
        )
        locked.delete()


def _project_role_check(role: str) -> None:
    if role not in PROJECT_ROLES:
        raise InvalidInput(
            f"A project role is one of: {', '.join(r.value for r in PROJECT_ROLES)}.", field="role"
        )


def project_member_add(
    *, project: Project, email: str, role: str, actor: Principal, source: str = MembershipSource.MANUAL
) -> ProjectMembership:
    """Give a user a role on ``project`` only. A member of the whole tenant already has a role on
    every project (refused, saying so). ``source`` as for membership_add."""
    _project_role_check(role)
    user = _user_by_email(email)
    tenant_role = (
        Membership.objects.filter(tenant_id=project.tenant_id, user=user).values_list("role", flat=True).first()
    )
    if tenant_role:
        raise Conflict(
            f"{user.get_username()} is {tenant_role} of the whole tenant, which covers every project; "
            "change their tenant role instead.",
            field="email",
        )
    with transaction.atomic():
        membership, created = ProjectMembership.objects.get_or_create(
            project=project, user=user, defaults={"role": role, "source": source}
        )
        if not created:
            raise Conflict(
                f"{user.get_username()} already has a role on project '{project.slug}' ({membership.role}).",
                field="email",
            )
        audit_record(actor=actor, action="project_member.create", tenant=project.tenant,
                     target=f"project:{project.slug}:user:{user.get_username()}", after={"role": role})
    return membership


def project_member_set_role(*, membership: ProjectMembership, role: str, actor: Principal) -> ProjectMembership:
    _project_role_check(role)
    with transaction.atomic():
        locked = (ProjectMembership.objects.select_for_update(of=("self",)).select_related("user", "project__tenant")
                  .get(pk=membership.pk))
        if locked.role == role:
            return locked
        before = locked.role
        locked.role = role
        locked.save(update_fields=["role"])
        audit_record(actor=actor, action="project_member.update", tenant=locked.project.tenant,
                     target=f"project:{locked.project.slug}:user:{locked.user.get_username()}",
                     before={"role": before}, after={"role": role})
    return locked


def project_member_remove(*, membership: ProjectMembership, actor: Principal) -> None:
    with transaction.atomic():
        locked = ProjectMembership.objects.select_for_update().select_related("project__tenant", "user").get(
            pk=membership.pk
        )
        audit_record(
            actor=actor, action="project_member.delete", tenant=locked.project.tenant,
            target=f"project:{locked.project.slug}:user:{locked.user.get_username()}",
            before={"role": locked.role},
        )
        locked.delete()
