"""The tenants app's tables: tenants with their LLM defaults, limits and retention, members and
their roles, API keys (stored as hashes) and the audit trail."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutagePolicy(models.TextChoices):
    """What /v1 does for a tenant while Redis (the rate-limit and budget store) is unreachable."""

    INHERIT = "inherit", "Platform default (GATEWAY_REDIS_OUTAGE)"
    CLOSED = "closed", "Refuse requests (fail closed)"
    OPEN = "open", "Serve without rate limits (fail open; not with a block budget)"


class Tenant(models.Model):
    """A customer of the gateway. Every tenant-owned row points here."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    timezone = models.CharField(max_length=64, default="UTC")

    # LLM defaults, applied to requests that leave them unset.
    default_model = models.CharField(max_length=255, blank=True, default="")
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    # What /v1/embeddings uses when the request names no model ("provider:model", an alias or a
    # bare id, as default_model); empty: the request must name one.
    default_embedding_model = models.CharField(max_length=255, blank=True, default="")

    # Limits, enforced across all workers; null means unlimited. Tokens per minute are reserved
    # at admission from the request's worst case and corrected when it settles.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True)
    # While Redis is unreachable: refuse (closed) or serve without rate limits (open); a tenant
    # with a block budget is always refused (gateway/routing.py TenantConfig.fails_open).
    redis_outage = models.CharField(max_length=8, choices=OutagePolicy.choices, default=OutagePolicy.INHERIT)

    # Ledger rows older than this many days are deleted (rollups are kept); empty = the
    # platform default (USAGE_RETENTION_DAYS).
    usage_retention_days = models.PositiveIntegerField(null=True, blank=True)

    # Response cache (opt-in).
    cache_enabled = models.BooleanField(default=False)
    cache_ttl_seconds = models.PositiveIntegerField(default=3600)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(temperature__isnull=True) | Q(temperature__gte=0, temperature__lte=2),
                name="tenant_temperature_range",
            ),
            models.CheckConstraint(
                condition=Q(top_p__isnull=True) | Q(top_p__gte=0, top_p__lte=1),
                name="tenant_top_p_range",
            ),
            models.CheckConstraint(
                condition=Q(max_tokens__isnull=True) | Q(max_tokens__gte=1),
                name="tenant_max_tokens_min",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"


ROLE_RANK = {Role.VIEWER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class MembershipSource(models.TextChoices):
    """Who manages a membership: an owner (the console, the API, the admin), or the SSO rules,
    which take it back at a login where no rule gives it any more (sso/services.py)."""

    MANUAL = "manual", "Added by a member or staff"
    SSO = "sso", "Granted by the SSO rules"


class Membership(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    source = models.CharField(max_length=10, choices=MembershipSource.choices, default=MembershipSource.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.tenant.slug}"


DEFAULT_PROJECT_SLUG = "default"


class Project(models.Model):
    """A part of a tenant (a team, a product) that owns API keys, so usage can be told apart and
    members can be given a role on it alone. Every tenant has a ``default`` project: keys go there
    unless another is named. Its limits and default model apply to requests of its keys (the
    project scope of gateway/scopes.py)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="projects")
    slug = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    default_model = models.CharField(max_length=255, blank=True, default="")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="project_unique_slug"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def is_default(self) -> bool:
        return self.slug == DEFAULT_PROJECT_SLUG


# The roles a member can hold on one project only (no owner: owning is tenant-wide).
PROJECT_ROLES = (Role.ADMIN, Role.VIEWER)
PROJECT_ROLE_CHOICES = [(r.value, r.label) for r in PROJECT_ROLES]


class ProjectMembership(models.Model):
    """A role on one project only, for a user who has no role in the whole tenant: a project
    admin manages that project's keys, a project viewer reads its usage (tenants/access.py)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="project_memberships"
    )
    role = models.CharField(max_length=10, choices=PROJECT_ROLE_CHOICES, default=Role.VIEWER)
    source = models.CharField(max_length=10, choices=MembershipSource.choices, default=MembershipSource.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="projectmembership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of project {self.project.slug}"


class KeyScope(models.TextChoices):
    CHAT = "chat", "Chat (the /v1 gateway)"
    ADMIN = "admin", "Admin (the management API and the gateway)"


class ApiKey(models.Model):
    """A bearer key. Only its SHA-256 and a visible prefix are stored; the key itself is
    shown once, when it is created."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    # The project it belongs to (always one of its tenant's; it never moves to another). RESTRICT,
    # not PROTECT: a project with keys cannot be deleted, but a tenant is, with its projects and keys.
    project = models.ForeignKey(Project, on_delete=models.RESTRICT, related_name="api_keys")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=KeyScope.choices, default=KeyScope.CHAT)
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    # Optional per-key restrictions (empty / null = inherit the tenant's).
    allowed_models = models.JSONField(default=list, blank=True)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="apikey_tenant_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…"

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class AuditEvent(models.Model):
    """Who changed what. Written by services in the same transaction as the change; secrets
    are masked before they get here."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    actor = models.CharField(max_length=200)  # "user:alice@example.com", "key:tg_ab12…", "system"
    action = models.CharField(max_length=64)  # "<noun>.<verb>", e.g. "api_key.create"
    target = models.CharField(max_length=200, blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="audit_tenant_created")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"
