from django.db import models
from django.utils import timezone


class BillingAccess(models.Model):
    """Holds platform-wide permissions only (no table): ``billing.view_all_tenants`` is what
    makes a Django staff user support staff."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_all_tenants", "Can read every tenant's usage, costs and settings")]


class UsageStatus(models.TextChoices):
    OK = "ok", "OK"
    ERROR = "error", "Error"
    PARTIAL = "partial", "Partial (stream cut short)"
    CACHE_HIT = "cache_hit", "Cache hit"
    REJECTED = "rejected", "Rejected (limit or budget)"


# Money: USD, 20 digits with 12 decimal places (sub-micro-dollar per request is exact).
MONEY = {"max_digits": 20, "decimal_places": 12, "null": True, "blank": True}


class UsageLog(models.Model):
    """The ledger: one row per request, keyed by its request id (the ``x-request-id`` the
    client got). No prompts, answers or prices are copied here; cost is computed once, with
    the price in force when the request ran."""

    request_id = models.CharField(max_length=40, unique=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="usage")
    api_key = models.ForeignKey("tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_requested = models.CharField(max_length=255, blank=True, default="")  # alias or id as sent
    provider = models.ForeignKey("providers.Provider", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    provider_model = models.ForeignKey(
        "providers.ProviderModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=10, choices=UsageStatus.choices)
    error_type = models.CharField(max_length=40, blank=True, default="")
    input_tokens = models.PositiveIntegerField(default=0)
    cached_input_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    tokens_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(**MONEY)  # null: the price is unknown (never recorded as $0)
    provider_cost = models.DecimalField(**MONEY)  # what the provider reported (OpenRouter), if it did
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    stream = models.BooleanField(default=False)
    conversation_id = models.CharField(max_length=128, blank=True, default="")
    end_user = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="usage_tenant_created"),
            models.Index(fields=["created_at"], name="usage_created"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.status}"
