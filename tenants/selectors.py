"""Reads. Everything tenant-owned is looked up through the caller's tenant, so an id from
another tenant is simply not found."""

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from core.errors import Forbidden, InvalidInput, NotFound
from tenants.access import PROJECT, SUPPORT, Principal, TenantAccess, key_role, project_only_message
from tenants.keys import MALFORMED, UNKNOWN, key_hash, key_looks_valid, key_refusal
from tenants.models import DEFAULT_PROJECT_SLUG, ApiKey, AuditEvent, Membership, Project, ProjectMembership, Tenant


class KeyRejected(Exception):
    """A bearer key that does not authenticate; the message says why and what to do."""


def api_key_authenticate(*, raw: str) -> ApiKey:
    """The live key for ``raw`` with its tenant loaded, or ``KeyRejected``. A suspended
    tenant's key still authenticates on /api, where its ``TenantAccess`` is read-only
    (the gateway refuses it on /v1)."""
    if not key_looks_valid(raw):
        raise KeyRejected(f"{MALFORMED} Check the Authorization header (Authorization: Bearer tg_…).")
    try:
        key = ApiKey.objects.select_related("tenant").get(key_hash=key_hash(raw))
    except ApiKey.DoesNotExist:
        raise KeyRejected(UNKNOWN) from None
    refusal = key_refusal(masked=key.masked, revoked_at=key.revoked_at, expires_at=key.expires_at,
                          now=timezone.now())
    if refusal:
        raise KeyRejected(refusal)
    return key


def tenants_visible(*, principal: Principal, projects: bool = False) -> QuerySet[Tenant]:
    """The tenants ``principal`` is a member of (support staff: every tenant); ``projects``: also
    those where the user has a role on some projects only (for callers that serve them)."""
    if principal.api_key is not None:
        return Tenant.objects.filter(pk=principal.api_key.tenant_id)
    if principal.is_support:
        return Tenant.objects.all()
    if principal.user is None:
        return Tenant.objects.none()
    if projects:
        return tenants_joined(user=principal.user)
    return Tenant.objects.filter(memberships__user=principal.user)


def tenants_joined(*, user) -> QuerySet[Tenant]:
    """The tenants where ``user`` has a role: in the whole tenant or on some of its projects."""
    return Tenant.objects.filter(Q(memberships__user=user) | Q(projects__memberships__user=user)).distinct()


def project_memberships_of(*, user) -> QuerySet[ProjectMembership]:
    """The user's roles on some projects only, with their projects, by tenant and project slug."""
    return (ProjectMembership.objects.filter(user=user).select_related("project")
            .order_by("project__tenant_id", "project__slug"))


def tenant_access_get(
    *, principal: Principal, tenant_id: int | None = None, tenant_hint: str | None = None,
    projects: bool = False,
) -> TenantAccess:
    """Resolve the tenant a request acts in, and the caller's role there.

    ``tenant_id`` comes from a URL (``/api/tenants/{id}``); ``tenant_hint`` (an id or a slug,
    from ``?tenant=`` or the ``X-Tollgate-Tenant`` header) picks one tenant for a session user
    who belongs to several. A tenant the caller may not see is reported as not found.

    A user with roles on some of the tenant's projects only gets the ``project`` role with
    those ``project_roles`` when the caller serves project-scoped access (``projects=True``),
    and is refused (403) everywhere else.
    """
    key = principal.api_key
    if key is not None:
        role = key_role(key)
        if not role:
            raise Forbidden(
                f"API key {key.masked} has scope 'chat': it works on /v1 only. The management "
                "API needs an admin-scope key or a logged-in session."
            )
        wanted = tenant_id if tenant_id is not None else _hint_matches(key.tenant, tenant_hint)
        if wanted is not None and wanted != key.tenant_id:
            raise NotFound(f"Tenant {tenant_id or tenant_hint} not found.")
        return TenantAccess(tenant=key.tenant, role=role, principal=principal)

    user = principal.user
    if user is None or not user.is_authenticated:
        raise Forbidden("Authentication required.")

    if tenant_id is None and tenant_hint:
        tenant = _tenant_by_hint(tenant_hint)
        tenant_id = tenant.pk if tenant else -1
    if tenant_id is not None:
        membership = (
            Membership.objects.select_related("tenant").filter(user=user, tenant_id=tenant_id).first()
        )
        if membership is not None:
            return TenantAccess(tenant=membership.tenant, role=membership.role, principal=principal)
        if principal.is_support:
            tenant = Tenant.objects.filter(pk=tenant_id).first()
            if tenant is not None:
                return TenantAccess(tenant=tenant, role=SUPPORT, principal=principal)
        access = _project_access(principal=principal, tenant_id=tenant_id, projects=projects)
        if access is not None:
            return access
        raise NotFound(f"Tenant {tenant_hint or tenant_id} not found.")

    memberships = list(Membership.objects.select_related("tenant").filter(user=user)[:21])
    if len(memberships) == 1:
        m = memberships[0]
        return TenantAccess(tenant=m.tenant, role=m.role, principal=principal)
    if not memberships:
        project_tenants = sorted(set(
            ProjectMembership.objects.filter(user=user).values_list("project__tenant_id", flat=True)
        ))
        if len(project_tenants) == 1:
            return _project_access(principal=principal, tenant_id=project_tenants[0], projects=projects)
        if project_tenants:
            raise InvalidInput(
                "You have roles on projects of several tenants; choose one with ?tenant=<id or slug> or "
                "the X-Tollgate-Tenant header.",
                field="tenant",
            )
        if principal.is_support:
            raise InvalidInput(
                "Support staff act in a chosen tenant: add ?tenant=<id or slug> or the "
                "X-Tollgate-Tenant header.",
                field="tenant",
            )
        raise NotFound("You are not a member of any tenant.")
    slugs = ", ".join(sorted(m.tenant.slug for m in memberships[:20]))
    raise InvalidInput(
        f"You belong to several tenants ({slugs}); choose one with ?tenant=<id or slug> or the "
        "X-Tollgate-Tenant header.",
        field="tenant",
    )


def _project_access(*, principal: Principal, tenant_id: int, projects: bool) -> TenantAccess | None:
    """The access of a user with roles on some projects of the tenant only (None: no such role)."""
    roles = dict(
        ProjectMembership.objects.filter(user=principal.user, project__tenant_id=tenant_id)
        .values_list("project_id", "role")
    )
    if not roles:
        return None
    tenant = Tenant.objects.get(pk=tenant_id)
    if not projects:
        raise Forbidden(project_only_message(tenant, doing="this request"))
    return TenantAccess(tenant=tenant, role=PROJECT, principal=principal, project_roles=roles)


def _tenant_by_hint(hint: str) -> Tenant | None:
    if hint.isascii() and hint.isdigit():  # not '¹' or '٣', which isdigit() also accepts
        return Tenant.objects.filter(pk=int(hint)).first()
    if "\x00" in hint:  # no slug has one, and PostgreSQL refuses it in a query
        return None
    return Tenant.objects.filter(slug=hint).first()


def _hint_matches(tenant: Tenant, hint: str | None) -> int | None:
    """For key callers a hint is optional; when given it must name the key's own tenant."""
    if not hint:
        return None
    if hint == tenant.slug or hint == str(tenant.pk):
        return tenant.pk
    return -1


def api_key_list(*, tenant: Tenant, project_ids: frozenset[int] | None = None) -> QuerySet[ApiKey]:
    """The tenant's keys; ``project_ids`` (a project-scoped caller's): those projects' only."""
    keys = ApiKey.objects.filter(tenant=tenant).select_related("created_by", "project")
    return keys if project_ids is None else keys.filter(project_id__in=project_ids)


def api_key_get(*, tenant: Tenant, key_id: int, project_ids: frozenset[int] | None = None) -> ApiKey:
    key = api_key_list(tenant=tenant, project_ids=project_ids).filter(pk=key_id).first()
    if key is None:
        raise NotFound(f"API key {key_id} not found in tenant '{tenant.slug}'.")
    return key


def membership_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username")


def membership_get(*, tenant: Tenant, membership_id: int) -> Membership:
    membership = (
        Membership.objects.filter(tenant=tenant, pk=membership_id).select_related("user").first()
    )
    if membership is None:
        raise NotFound(f"Member {membership_id} not found in tenant '{tenant.slug}'.")
    return membership


def audit_event_list(*, tenant: Tenant) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(tenant=tenant)


# --- projects --------------------------------------------------------------------------------


def project_list(*, tenant: Tenant, project_ids: frozenset[int] | None = None) -> QuerySet[Project]:
    """The tenant's projects; ``project_ids`` (a project-scoped caller's): those only."""
    projects = Project.objects.filter(tenant=tenant).order_by("slug")
    return projects if project_ids is None else projects.filter(pk__in=project_ids)


def project_get(*, tenant: Tenant, project: int | str, project_ids: frozenset[int] | None = None) -> Project:
    """One project of ``tenant`` by id or slug; another tenant's (or one the caller may not see)
    is not found."""
    projects = project_list(tenant=tenant, project_ids=project_ids)
    text = str(project).strip()
    if isinstance(project, int) or (text.isascii() and text.isdigit()):
        found = projects.filter(pk=int(text)).first() if len(text) < 19 else None
    elif "\x00" in text:
        found = None
    else:
        found = projects.filter(slug=text).first()
    if found is None:
        raise NotFound(f"Project {text!r} not found in tenant '{tenant.slug}'; GET /api/projects lists them.")
    return found


def project_list_with_key_counts(*, tenant: Tenant, project_ids: frozenset[int] | None = None) -> QuerySet[Project]:
    """``project_list`` with ``key_count`` (every key of the project) and ``active_key_count``
    (neither revoked nor expired: those block deleting it), counted in the same query."""
    now = timezone.now()
    active = Q(api_keys__revoked_at__isnull=True) & (Q(api_keys__expires_at__isnull=True)
                                                      | Q(api_keys__expires_at__gt=now))
    return project_list(tenant=tenant, project_ids=project_ids).annotate(
        key_count=Count("api_keys"), active_key_count=Count("api_keys", filter=active))


def project_default(*, tenant: Tenant) -> Project:
    return Project.objects.get(tenant=tenant, slug=DEFAULT_PROJECT_SLUG)


def project_membership_list(*, project: Project) -> QuerySet[ProjectMembership]:
    return ProjectMembership.objects.filter(project=project).select_related("user").order_by("user__username")


def project_membership_get(*, project: Project, membership_id: int) -> ProjectMembership:
    found = project_membership_list(project=project).filter(pk=membership_id).first()
    if found is None:
        raise NotFound(f"Member {membership_id} not found on project '{project.slug}'.")
    return found
