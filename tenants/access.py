"""Who is calling, and what they may do in one tenant.

A ``Principal`` is either a logged-in user or an API key. A ``TenantAccess`` is a principal
resolved against one tenant, with the role that decides what it may do there. Support staff
(Django staff with ``support.view_all_tenants``) get the read-only ``support`` role in every
tenant; they change tenants through the Django admin, never through tenant secrets.

A member can also hold a role on some projects only (``ProjectMembership``, no tenant role):
their access has the ``project`` role, which may do nothing tenant-wide, and ``project_roles``
maps each of those projects to admin or viewer. Views that serve project-scoped callers (keys,
projects, usage) ask for them explicitly (``tenant_access_get(..., projects=True)``; the console's
``tenant_page(projects=True)``); every other view refuses them. ``project_roles`` is None for
everyone else (the tenant role covers every project).

A suspended tenant (``is_active`` false) is read-only for everyone here, whatever their role:
members and admin keys still read, every change is refused with a message that says so.
Staff lift the suspension in the Django admin.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import Forbidden
from tenants.models import ROLE_RANK, ApiKey, KeyScope, Project, Role, Tenant

SUPPORT = "support"
PROJECT = "project"  # a role on some projects only (TenantAccess.project_roles)
VIEW_ALL_TENANTS_PERM = "support.view_all_tenants"


@dataclass(frozen=True)
class Principal:
    user: object | None = None  # a django.contrib.auth user
    api_key: ApiKey | None = None

    @property
    def label(self) -> str:
        """How the audit trail names this principal (never a secret)."""
        if self.api_key is not None:
            return f"key:{self.api_key.masked}"
        if self.user is not None:
            return f"user:{self.user.get_username()}"
        return "system"

    @property
    def is_support(self) -> bool:
        user = self.user
        return bool(
            user is not None
            and user.is_active
            and user.is_staff
            and user.has_perm(VIEW_ALL_TENANTS_PERM)
        )


SYSTEM = Principal()


@dataclass(frozen=True)
class TenantAccess:
    tenant: Tenant
    role: str  # owner, admin, viewer, support (read-only), or project (project_roles only)
    principal: Principal
    project_roles: Mapping[int, str] | None = None  # project id -> admin / viewer; None: every project

    @property
    def project_ids(self) -> frozenset[int] | None:
        """The projects this access may see; None: all of the tenant's."""
        return None if self.project_roles is None else frozenset(self.project_roles)

    def can_in_project(self, project_id: int, needed: Role) -> bool:
        if self.project_roles is None:
            return self.can(needed)
        role = self.project_roles.get(project_id)
        if role is None or self.suspended:
            return False
        return ROLE_RANK[Role(role)] >= ROLE_RANK[needed]

    def require_in_scope(self, project: Project | None, needed: Role, *, doing: str, what: str) -> None:
        """``needed`` over ``what`` of ``project``, or tenant-wide when ``project`` is None (the
        tenant role only). ``doing`` has a ``{}`` for which ``what``: "creating {}"."""
        if project is None:
            self.require(needed, doing=doing.format(f"tenant-wide {what}"))
        else:
            self.require_in_project(project, needed, doing=doing.format(f"{what} of project '{project.slug}'"))

    def require_in_project(self, project: Project, needed: Role, *, doing: str) -> None:
        if self.project_roles is None:
            self.require(needed, doing=doing)
            return
        if self.can_in_project(project.pk, needed):
            return
        if self.suspended:
            raise Forbidden(suspended_message(self.tenant, doing=doing))
        role = self.project_roles.get(project.pk)
        raise Forbidden(
            f"Your role on project '{project.slug}' is {role or 'none'}; {doing} needs "
            f"{needed.value} or higher on it."
        )

    def administered_projects(self, *, doing: str) -> frozenset[int] | None:
        """For a change that may be limited to some projects (budgets, limit rules): None when
        this access has a tenant role that allows it (every project), else the projects it
        administers; Forbidden when it may change nothing."""
        if self.project_roles is None:
            self.require(Role.ADMIN, doing=doing)
            return None
        if self.suspended:
            raise Forbidden(suspended_message(self.tenant, doing=doing))
        administered = frozenset(p for p, role in self.project_roles.items() if role == Role.ADMIN)
        if not administered:
            raise Forbidden(f"Your roles in tenant '{self.tenant.slug}' are viewer roles on some projects; {doing} "
                            "needs the admin role on the project (or in the tenant).")
        return administered

    @property
    def suspended(self) -> bool:
        return not self.tenant.is_active

    def can(self, needed: Role) -> bool:
        if self.role in (SUPPORT, PROJECT) or self.suspended:
            return False
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[needed]

    def require(self, needed: Role, *, doing: str) -> None:
        if self.can(needed):
            return
        if self.suspended and self.role != SUPPORT:
            raise Forbidden(suspended_message(self.tenant, doing=doing))
        if self.role == SUPPORT:
            raise Forbidden(
                f"Support access is read-only: {doing} needs the {needed.value} role in "
                f"tenant '{self.tenant.slug}'."
            )
        if self.role == PROJECT:
            raise Forbidden(project_only_message(self.tenant, doing=doing))
        raise Forbidden(
            f"Your role in tenant '{self.tenant.slug}' is {self.role}; {doing} needs "
            f"{needed.value} or higher."
        )


def suspended_message(tenant: Tenant, *, doing: str) -> str:
    return (
        f"Tenant '{tenant.slug}' is suspended: it is read-only, so {doing} is refused. "
        "Contact support to lift the suspension."
    )


def project_only_message(tenant: Tenant, *, doing: str) -> str:
    return (
        f"Your access to tenant '{tenant.slug}' is a role on some of its projects only; {doing} "
        "needs a role in the whole tenant. Ask an owner of the tenant."
    )


def key_role(key: ApiKey) -> str:
    """An admin-scope key acts as a tenant admin; a chat key has no management role."""
    return Role.ADMIN if key.scope == KeyScope.ADMIN else ""
