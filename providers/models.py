"""The providers app's tables: upstream providers (platform-wide or a tenant's own, secrets
encrypted at rest), their synced models with prices and capabilities, a tenant's choice of
platform models, and aliases with their ordered fallback targets."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from core.errors import InvalidInput
from core.validation import text_check
from providers.crypto import EncryptedJSONField, EncryptedTextField


class ProviderType(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OLLAMA = "ollama", "Ollama"
    OPENROUTER = "openrouter", "OpenRouter"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"
    AZURE = "azure", "Azure OpenAI"
    GEMINI = "gemini", "Google Gemini (Gemini API or Vertex AI)"
    BEDROCK = "bedrock", "Amazon Bedrock"
    MOCK = "mock", "Mock (built in, no network)"


class SyncStatus(models.TextChoices):
    NEVER = "never", "Never synced"
    RUNNING = "running", "Running"
    OK = "ok", "OK"
    ERROR = "error", "Error"


class Provider(models.Model):
    """An upstream LLM API. ``owner`` is a tenant (bring your own key) or null (platform-wide,
    managed by staff)."""

    owner = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="providers"
    )
    name = models.SlugField(max_length=64, help_text="Used in model ids: <name>:<model>.")
    display_name = models.CharField(max_length=200, blank=True, default="")
    provider_type = models.CharField(max_length=32, choices=ProviderType.choices)
    base_url = models.URLField(max_length=500, blank=True, default="")
    api_key = EncryptedTextField(blank=True, default="")
    extra_headers = EncryptedJSONField(blank=True, default=dict)
    # Non-secret settings a provider type needs beyond its URL and key (validated by the type's
    # own code in providers/services.py); secrets go in api_key or extra_headers, encrypted.
    options = models.JSONField(blank=True, default=dict)
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=0, help_text="Higher wins when two providers offer a model.")
    timeout_seconds = models.FloatField(default=60.0)
    max_retries = models.PositiveSmallIntegerField(default=2)
    auto_sync = models.BooleanField(default=True)
    sync_interval_minutes = models.PositiveIntegerField(default=1440)
    sync_status = models.CharField(max_length=10, choices=SyncStatus.choices, default=SyncStatus.NEVER)
    sync_started_at = models.DateTimeField(null=True, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "name"]
        indexes = [models.Index(fields=["auto_sync", "enabled", "last_sync_at"], name="provider_due_sync")]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], name="provider_unique_name_per_owner",
                condition=Q(owner__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["name"], name="provider_unique_platform_name", condition=Q(owner__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return self.name if self.owner_id is None else f"{self.name} (tenant {self.owner_id})"

    def clean(self):
        """The admin saves through a ModelForm, not the services: the services' checks of what
        goes upstream in HTTP headers, as a form error."""
        from providers.services import provider_credentials_check  # services import this module

        try:
            provider_credentials_check(api_key=self.api_key, extra_headers=self.extra_headers)
        except InvalidInput as exc:
            raise ValidationError(exc.message) from None

    def upstream_extra_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers sent with every request to this provider besides auth, as (name, value)
        pairs in order: OpenRouter's attribution (settings OPENROUTER_SITE_URL and
        OPENROUTER_APP_NAME, when set), then the provider's own ``extra_headers``, which win.
        The adapters send them last (providers/adapters/headers.py)."""
        pairs: list[tuple[str, str]] = []
        if self.provider_type == ProviderType.OPENROUTER:
            site = getattr(settings, "OPENROUTER_SITE_URL", "")
            app = getattr(settings, "OPENROUTER_APP_NAME", "")
            if site:
                pairs.append(("HTTP-Referer", site))
            if app:
                pairs.append(("X-Title", app))
        return (*pairs, *sorted((self.extra_headers or {}).items()))


class PriceSource(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    SYNCED = "synced", "Reported by the provider"
    CATALOG = "catalog", "genai-prices catalog"
    LOCAL = "local", "Self-hosted (no per-token price)"
    MANUAL = "manual", "Set by an admin"


# Prices are USD per million tokens. 12 decimal places keep sub-micro-dollar token prices exact.
# MAX_PRICE is the dearest a model may be (list prices reach $600): at it, a request of the most
# tokens a ledger row holds still has a cost the ledger can store (billing.pricing.MAX_COST).
MAX_PRICE = Decimal(10_000)
PRICE_MAX_MESSAGE = f"A price must be at most {MAX_PRICE} USD per million tokens."
PRICE = {"max_digits": 24, "decimal_places": 12, "null": True, "blank": True,
         "validators": [MinValueValidator(0), MaxValueValidator(MAX_PRICE, message=PRICE_MAX_MESSAGE)]}


class ModelMode(models.TextChoices):
    CHAT = "chat", "Chat"
    EMBEDDING = "embedding", "Embedding"


class ProviderModel(models.Model):
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    model_id = models.CharField(max_length=255)
    display_name = models.CharField(max_length=255, blank=True, default="")
    mode = models.CharField(max_length=16, choices=ModelMode.choices, default=ModelMode.CHAT)
    context_length = models.PositiveIntegerField(null=True, blank=True)
    supports_tools = models.BooleanField(default=False)
    supports_vision = models.BooleanField(default=False)
    input_price = models.DecimalField(**PRICE)
    output_price = models.DecimalField(**PRICE)
    cached_input_price = models.DecimalField(**PRICE)
    cache_write_price = models.DecimalField(**PRICE)  # prompt-cache writes (Anthropic); None: input price
    price_source = models.CharField(max_length=10, choices=PriceSource.choices, default=PriceSource.UNKNOWN)
    enabled = models.BooleanField(default=True)
    stale = models.BooleanField(default=False, help_text="Gone from the provider's catalog; kept for history.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider_id", "model_id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model_id"], name="providermodel_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}:{self.model_id}"

    def clean(self):
        """For the admin: the id goes out in the x-tollgate-model response header."""
        try:
            text_check(self.model_id, field="model_id", what="model_id")
        except InvalidInput as exc:
            raise ValidationError(exc.message) from None


class TenantModel(models.Model):
    """A tenant's choice to use one model of a platform provider. Models of a tenant's own
    providers need no row: ProviderModel.enabled decides for them."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="model_choices")
    provider_model = models.ForeignKey(ProviderModel, on_delete=models.CASCADE, related_name="tenant_choices")
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "provider_model"], name="tenantmodel_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} uses {self.provider_model_id}: {self.enabled}"


class RoutingStrategy(models.TextChoices):
    """How an alias picks one deployment inside a priority group (gateway/deployments.py)."""

    WEIGHTED = "weighted", "Weighted random"
    LEAST_BUSY = "least-busy", "Fewest requests in flight"
    LATENCY = "latency", "Lowest recent latency (time to first token for streams)"
    USAGE = "usage", "Most rpm/tpm headroom left"
    COST = "cost", "Cheapest known price"


class ModelAlias(models.Model):
    """A tenant's name for a set of deployments (provider models) in priority groups, with
    router settings: the strategy that spreads requests inside a group, session affinity, and
    the aliases or models that take over after a context-window or content-policy error.

    Tenant-wide (``project`` empty: every key of the tenant may send it) or of one project (only
    that project's keys may; for them it shadows a tenant-wide alias of the same name). Names are
    unique among the tenant-wide aliases and among each project's."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="aliases")
    # Deleting a project deletes its aliases (no key could send them any more).
    project = models.ForeignKey("tenants.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="aliases")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True, default="")
    retries = models.PositiveSmallIntegerField(default=1, help_text="Retries per target on retryable failures.")
    timeout_seconds = models.FloatField(null=True, blank=True, help_text="Per attempt; empty = the provider's.")
    allowed_fails = models.PositiveSmallIntegerField(
        default=3, help_text="Failures of one target inside the cooldown window before it is skipped."
    )
    cooldown_seconds = models.PositiveIntegerField(default=60)
    strategy = models.CharField(max_length=16, choices=RoutingStrategy.choices, default=RoutingStrategy.WEIGHTED)
    session_affinity = models.BooleanField(
        default=False, help_text="Requests of one session (x-tollgate-session, metadata.user_id or user) stick "
        "to one deployment while it is healthy."
    )
    # Names (aliases or models) tried, in order, when every deployment fails with that error class.
    context_window_fallbacks = models.JSONField(default=list, blank=True)
    content_policy_fallbacks = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], condition=Q(project__isnull=True),
                                    name="alias_unique_name"),
            models.UniqueConstraint(fields=["project", "name"], condition=Q(project__isnull=False),
                                    name="alias_unique_project_name"),
        ]

    def __str__(self) -> str:
        where = f"project {self.project_id}" if self.project_id else f"tenant {self.tenant_id}"
        return f"{self.name} ({where})"


class AliasTarget(models.Model):
    """One deployment of an alias: a provider model with its weight and priority group, the
    provider account's own rpm / tpm limits, and parameter overrides."""

    alias = models.ForeignKey(ModelAlias, on_delete=models.CASCADE, related_name="targets")
    position = models.PositiveSmallIntegerField()
    provider_model = models.ForeignKey(ProviderModel, on_delete=models.CASCADE, related_name="alias_targets")
    # Parameters filled in when the request leaves them unset: temperature, max_tokens, top_p.
    overrides = models.JSONField(default=dict, blank=True)
    # The group: lower is tried first; the next group is the fallback when none in it is usable.
    priority = models.PositiveSmallIntegerField(default=0)
    weight = models.PositiveIntegerField(default=1, help_text="Share of its group's traffic (0: only as a spare).")
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute it may take.")
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute it may take.")

    class Meta:
        ordering = ["alias_id", "position"]
        constraints = [models.UniqueConstraint(fields=["alias", "position"], name="aliastarget_unique_position")]

    def __str__(self) -> str:
        return f"{self.alias.name}[{self.position}] -> {self.provider_model_id}"
