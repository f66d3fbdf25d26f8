"""What an SSO login does to the user (sso_user_sync): find them by the issuer's subject (the
first time by verified email) or create them, apply the mapping rules to their tenant and project
memberships (add, re-role, and take back what the rules granted and no rule gives any more), and
set the staff and support roles from the groups claim. Run on every SSO login, so the identity
provider stays the source of truth."""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import Conflict, InvalidInput, TollgateError
from sso.models import Identity
from sso.rules import grants_for
from support.groups import SUPPORT_GROUP
from tenants.access import SYSTEM, Principal
from tenants.models import Membership, MembershipSource, Project, ProjectMembership, Tenant
from tenants.services import (
    audit_record,
    membership_add,
    membership_remove,
    membership_set_role,
    project_member_add,
    project_member_remove,
    project_member_set_role,
    user_get_or_create_by_email,
)

log = logging.getLogger("tollgate.sso")


class SSORefused(TollgateError):
    """The sign-in is refused; the message is shown to the person and says what to do."""

    status = 403


def claim_groups(claims: dict[str, Any]) -> list[str]:
    """The groups claim (OIDC_GROUPS_CLAIM) as a list of strings (a single string counts as one)."""
    value = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []


def _email_verified(claims: dict[str, Any]) -> bool:
    value = claims.get("email_verified")
    return value is True or (isinstance(value, str) and value.lower() == "true")


def sso_user_sync(*, claims: dict[str, Any]):
    """The user an SSO login with these (already verified) claims signs in as, with memberships
    and staff roles brought up to the rules. Raises SSORefused when the person has no access
    once the rules are applied (what the rules took back stays taken back)."""
    email = str(claims.get("email") or "").strip().lower()
    if not email:
        raise SSORefused(
            "Your identity provider sent no email address, so Tollgate cannot tell who you are. "
            "Ask your administrator to release the email claim (scope 'email') to Tollgate."
        )
    verified = _email_verified(claims)
    groups = claim_groups(claims)
    granted = grants_for(
        email=email,
        email_verified=verified,
        groups=groups,
        domain_rules=settings.OIDC_DOMAIN_RULES,
        group_rules=settings.OIDC_GROUP_RULES,
    )
    tenants = {t.slug: t for t in Tenant.objects.filter(slug__in=granted.tenants)}
    for slug in sorted(set(granted.tenants) - set(tenants)):
        log.warning("SSO rule names tenant '%s', which does not exist; rule skipped", slug)
    projects = _projects_named(list(granted.projects))
    for tenant_slug, project_slug in sorted(set(granted.projects) - set(projects)):
        log.warning("SSO rule names project '%s/%s', which does not exist; rule skipped", tenant_slug, project_slug)
    staff = bool(settings.OIDC_STAFF_GROUP) and settings.OIDC_STAFF_GROUP in groups
    support = bool(settings.OIDC_SUPPORT_GROUP) and settings.OIDC_SUPPORT_GROUP in groups

    subject = str(claims.get("sub") or "")
    identity = Identity.objects.select_related("user").filter(issuer=settings.OIDC_ISSUER, subject=subject).first()
    user = identity.user if identity is not None else _user_by_email(email=email, verified=verified)
    if user is not None and not user.is_active:
        raise SSORefused(f"The Tollgate account {user.get_username()} is disabled; ask Tollgate staff.")
    hint = "" if verified else " (your provider has not verified your email, so domain rules do not apply)"
    refusal = SSORefused(
        f"{email} signed in, but no Tollgate tenant is set up for your email domain or your "
        f"groups{hint}. Ask your tenant's owner to add you, or Tollgate staff to add a rule."
    )
    if identity is None and not (tenants or projects or staff or support or _has_membership(user)):
        raise refusal  # nobody is created, nor linked to this identity, for nothing

    with transaction.atomic():
        if user is None:
            user = user_get_or_create_by_email(email=email)
        _memberships_apply(user=user, roles={tenant: granted.tenants[slug] for slug, tenant in tenants.items()})
        _project_memberships_apply(user=user, roles={p: granted.projects[key] for key, p in projects.items()})
        _staff_apply(user=user, staff=staff, support=support)
        admitted = staff or support or _has_membership(user)
        if admitted:
            if identity is None:  # get_or_create: two first sign-ins of one subject at once make one row
                identity, _ = Identity.objects.get_or_create(
                    issuer=settings.OIDC_ISSUER, subject=subject, defaults={"user": user}
                )
            Identity.objects.filter(pk=identity.pk).update(email=email, last_login_at=timezone.now())
    if not admitted:  # refused after the take-back is committed: off-boarding at the IdP sticks
        raise refusal
    return user


def _has_membership(user) -> bool:
    """A role in some tenant or on some project."""
    return user is not None and (
        Membership.objects.filter(user=user).exists() or ProjectMembership.objects.filter(user=user).exists()
    )


def _projects_named(keys: list[tuple[str, str]]) -> dict[tuple[str, str], Project]:
    """The existing projects of these (tenant slug, project slug) pairs."""
    if not keys:
        return {}
    found = Project.objects.select_related("tenant").filter(
        tenant__slug__in={t for t, _ in keys}, slug__in={p for _, p in keys}
    )
    wanted = set(keys)
    return {(p.tenant.slug, p.slug): p for p in found if (p.tenant.slug, p.slug) in wanted}


def _memberships_apply(*, user, roles: dict[Tenant, str]) -> None:
    """Tenant memberships: join or re-role where the rules say (a manual membership stays manual
    and follows the rule's role); take back the memberships the rules granted that no rule gives
    any more. The tenant's last owner is never demoted nor removed (logged, kept)."""
    email = user.get_username()  # the tenants services find the user by username or email
    held = {m.tenant_id: m for m in Membership.objects.select_related("tenant").filter(user=user).order_by("pk")}
    for tenant, role in roles.items():
        membership = held.get(tenant.pk)
        if membership is None:
            try:
                membership_add(tenant=tenant, email=email, role=role, actor=SYSTEM, source=MembershipSource.SSO)
                log.info("SSO: %s joined tenant %s as %s", email, tenant.slug, role)
            except Conflict:  # another login of theirs added it a moment ago
                pass
        elif membership.role != role:
            try:
                membership_set_role(membership=membership, role=role, actor=SYSTEM)
            except InvalidInput as exc:  # the tenant's last owner keeps the role
                log.warning("SSO: role of %s in %s kept: %s", email, tenant.slug, exc.message)
    granted = {tenant.pk for tenant in roles}
    for membership in held.values():
        if membership.source != MembershipSource.SSO or membership.tenant_id in granted:
            continue
        try:
            membership_remove(membership=membership, actor=SYSTEM)
            log.info("SSO: %s left tenant %s: no rule gives it any more", email, membership.tenant.slug)
        except Membership.DoesNotExist:  # another login of theirs removed it a moment ago
            pass
        except InvalidInput as exc:  # the tenant's last owner stays
            log.warning("SSO: %s kept in %s although no rule gives it: %s", email, membership.tenant.slug,
                        exc.message)


def _project_memberships_apply(*, user, roles: dict[Project, str]) -> None:
    """Project roles, as _memberships_apply does tenant roles, after it: a grant in a tenant the
    user is a member of is skipped (the tenant role covers every project), and a project role
    the rules granted there is taken back."""
    email = user.get_username()
    member_of = set(Membership.objects.filter(user=user).values_list("tenant_id", flat=True))
    wanted: dict[int, tuple[Project, str]] = {}
    for project, role in roles.items():
        if project.tenant_id in member_of:
            log.info("SSO: %s has a role in the whole tenant %s, which covers project %s; project rule skipped",
                     email, project.tenant.slug, project.slug)
        else:
            wanted[project.pk] = (project, role)
    held = {
        pm.project_id: pm
        for pm in ProjectMembership.objects.select_related("project__tenant").filter(user=user).order_by("pk")
    }
    for project_id, (project, role) in wanted.items():
        membership = held.get(project_id)
        if membership is None:
            try:
                project_member_add(project=project, email=email, role=role, actor=SYSTEM,
                                   source=MembershipSource.SSO)
                log.info("SSO: %s joined project %s/%s as %s", email, project.tenant.slug, project.slug, role)
            except Conflict:  # added a moment ago by another login of theirs
                pass
        elif membership.role != role:
            project_member_set_role(membership=membership, role=role, actor=SYSTEM)
    for membership in held.values():
        if membership.source != MembershipSource.SSO or membership.project_id in wanted:
            continue
        try:
            project_member_remove(membership=membership, actor=SYSTEM)
            log.info("SSO: %s left project %s/%s: no rule gives it any more", email,
                     membership.project.tenant.slug, membership.project.slug)
        except ProjectMembership.DoesNotExist:  # removed a moment ago by another login of theirs
            pass


def _user_by_email(*, email: str, verified: bool):
    """The existing user a first SSO sign-in links to: only through a verified email, and only
    one not linked to another subject of this issuer."""
    User = get_user_model()
    users = list(User.objects.filter(Q(email__iexact=email) | Q(username__iexact=email))[:2])
    if len(users) > 1:
        raise SSORefused(
            f"Two Tollgate accounts use the email {email}; ask Tollgate staff to merge them, "
            "then sign in again."
        )
    if not users:
        return None
    if not verified:
        raise SSORefused(
            f"Your identity provider has not verified the email {email}, and a Tollgate account "
            "with that email exists: verify the email with your provider, then sign in again."
        )
    if Identity.objects.filter(user=users[0], issuer=settings.OIDC_ISSUER).exists():
        raise SSORefused(
            f"The Tollgate account {email} belongs to another account at your identity provider; "
            "ask Tollgate staff."
        )
    return users[0]


def _staff_apply(*, user, staff: bool, support: bool) -> None:
    """is_staff / is_superuser from OIDC_STAFF_GROUP, the support group from OIDC_SUPPORT_GROUP;
    a setting left empty leaves what it would decide alone."""
    staff_managed, support_managed = bool(settings.OIDC_STAFF_GROUP), bool(settings.OIDC_SUPPORT_GROUP)
    if not (staff_managed or support_managed):
        return
    support_group = Group.objects.filter(name=SUPPORT_GROUP).first()
    in_support = support_group is not None and user.groups.filter(pk=support_group.pk).exists()
    before = {"is_staff": user.is_staff, "is_superuser": user.is_superuser, "support": in_support}
    after = dict(before)
    if staff_managed:
        after["is_superuser"] = staff
    if support_managed and support_group is not None:
        after["support"] = support
    after["is_staff"] = after["is_superuser"] or after["support"]
    if after == before:
        return
    user.is_staff, user.is_superuser = after["is_staff"], after["is_superuser"]
    user.save(update_fields=["is_staff", "is_superuser"])
    if after["support"] != before["support"]:
        (user.groups.add if after["support"] else user.groups.remove)(support_group)
    changed = [k for k in after if after[k] != before[k]]
    audit_record(
        actor=Principal(user=user),
        action="user.sso_roles",
        tenant=None,
        target=f"user:{user.get_username()}",
        before={k: before[k] for k in changed},
        after={k: after[k] for k in changed},
    )
