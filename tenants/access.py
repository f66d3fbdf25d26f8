"""Who is calling, and what they may do in one tenant.

A ``Principal`` is either a logged-in user or an API key. A ``TenantAccess`` is a principal
resolved against one tenant, with the role that decides what it may do there. Support staff
(Django staff with ``support.view_all_tenants``) get the read-only ``support`` role in every
tenant; they change tenants through the Django admin, never through tenant secrets.

A suspended tenant (``is_active`` false) is read-only for everyone here, whatever their role:
members and admin keys still read, every change is refused with a message that says so.
Staff lift the suspension in the Django admin.
"""

from dataclasses import dataclass

from core.errors import Forbidden
from tenants.models import ROLE_RANK, ApiKey, KeyScope, Role, Tenant

SUPPORT = "support"
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
    role: str  # owner, admin, viewer, or support (read-only)
    principal: Principal

    @property
    def suspended(self) -> bool:
        return not self.tenant.is_active

    def can(self, needed: Role) -> bool:
        if self.role == SUPPORT or self.suspended:
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
        raise Forbidden(
            f"Your role in tenant '{self.tenant.slug}' is {self.role}; {doing} needs "
            f"{needed.value} or higher."
        )


def suspended_message(tenant: Tenant, *, doing: str) -> str:
    return (
        f"Tenant '{tenant.slug}' is suspended: it is read-only, so {doing} is refused. "
        "Contact support to lift the suspension."
    )


def key_role(key: ApiKey) -> str:
    """An admin-scope key acts as a tenant admin; a chat key has no management role."""
    return Role.ADMIN if key.scope == KeyScope.ADMIN else ""
