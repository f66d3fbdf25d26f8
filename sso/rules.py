"""The SSO mapping rules, parsed from the environment when settings load (pure Python: no
Django models, so config/settings.py can import it and refuse a malformed value at start-up).

A rule list is ``key=grant`` pairs separated by commas, where a grant is ``tenant:role`` (a role
in the whole tenant: owner, admin or viewer) or ``tenant/project:role`` (a role on one project of
the tenant only: admin or viewer)::

    OIDC_DOMAIN_RULES=acme.com=acme:admin,example.org=example:viewer
    OIDC_GROUP_RULES=llm-admins=acme:admin,llm-users=acme:viewer,llm-support=acme/support:admin

or the same as a JSON object (``{"acme.com": "acme:admin"}``, or a list of grants per key:
``{"acme.com": ["acme:admin", "labs:viewer"]}``)."""

import json
import re
from dataclasses import dataclass

ROLES = ("owner", "admin", "viewer")  # tenants.models.Role, kept here so settings need no app
PROJECT_ROLES = ("admin", "viewer")  # tenants.models.PROJECT_ROLES (owning is tenant-wide)
_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$")
_DOMAIN_RE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$")


class RuleError(ValueError):
    """A malformed rule; the message names the variable and says what is expected."""


@dataclass(frozen=True)
class Grant:
    tenant: str  # a tenant slug
    role: str  # owner, admin or viewer; on a project admin or viewer
    project: str = ""  # a project slug of the tenant; "" for the whole tenant


@dataclass(frozen=True)
class Granted:
    """What the rules give one person."""

    tenants: dict[str, str]  # tenant slug -> owner / admin / viewer
    projects: dict[tuple[str, str], str]  # (tenant slug, project slug) -> admin / viewer


def _grant(name: str, key: str, value: str) -> Grant:
    target, sep, role = value.strip().partition(":")
    tenant, slash, project = target.strip().partition("/")
    tenant, project, role = tenant.strip(), project.strip(), role.strip().lower()
    form = (
        f"must map to '<tenant slug>:<role>' (role one of {', '.join(ROLES)}) or "
        f"'<tenant slug>/<project slug>:<role>' (role one of {', '.join(PROJECT_ROLES)}), "
        f"e.g. {key}=acme:viewer or {key}=acme/support:admin."
    )
    bad_project = slash and (not _SLUG_RE.match(project) or project.isdigit())
    if not sep or not _SLUG_RE.match(tenant) or bad_project or role not in (PROJECT_ROLES if slash else ROLES):
        raise RuleError(f"{name}: '{key}={value}' {form}")
    return Grant(tenant=tenant, role=role, project=project)


def rules_parse(name: str, raw: str, *, domains: bool = False) -> dict[str, tuple[Grant, ...]]:
    """``{key: grants}`` from ``raw`` (comma-separated ``key=grant`` or a JSON object).
    Domains are lower-cased and checked; a key given twice gathers its grants."""
    raw = (raw or "").strip()
    if not raw:
        return {}
    pairs: list[tuple[str, str]] = []
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RuleError(f"{name} is not valid JSON: {exc}.") from None
        for key, value in data.items():
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, str) for v in values):
                raise RuleError(
                    f"{name}: the value of '{key}' must be 'tenant:role', 'tenant/project:role' or a list of them."
                )
            pairs.extend((str(key), v) for v in values)
    else:
        for item in raw.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise RuleError(
                    f"{name}: '{item.strip()}' is not '<{'domain' if domains else 'group'}>=<tenant>:<role>' "
                    "(or '=<tenant>/<project>:<role>')."
                )
            pairs.append((key, value))
    rules: dict[str, tuple[Grant, ...]] = {}
    for key, value in pairs:
        key = key.strip().lower().lstrip("@") if domains else key.strip()
        if domains and not _DOMAIN_RE.match(key):
            raise RuleError(f"{name}: '{key}' is not an email domain (e.g. acme.com).")
        if not key:
            raise RuleError(f"{name}: a rule has an empty name before '='.")
        rules[key] = (*rules.get(key, ()), _grant(name, key, value))
    return rules


def grants_for(
    *,
    email: str,
    email_verified: bool,
    groups: list[str],
    domain_rules: dict[str, tuple[Grant, ...]],
    group_rules: dict[str, tuple[Grant, ...]],
) -> Granted:
    """The tenant and project roles the rules give: domain rules only for a verified email,
    group rules for every group of the claim; the highest role wins where several name one
    tenant (or one project)."""
    rank = {role: i for i, role in enumerate(reversed(ROLES))}  # viewer 0, admin 1, owner 2
    found: list[Grant] = []
    domain = email.rpartition("@")[2].lower() if "@" in email else ""
    if email_verified and domain:
        found.extend(domain_rules.get(domain, ()))
    for group in groups:
        found.extend(group_rules.get(group, ()))
    tenants: dict[str, str] = {}
    projects: dict[tuple[str, str], str] = {}
    for grant in found:
        into, key = (projects, (grant.tenant, grant.project)) if grant.project else (tenants, grant.tenant)
        if key not in into or rank[grant.role] > rank[into[key]]:
            into[key] = grant.role
    return Granted(tenants=tenants, projects=projects)
