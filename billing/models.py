"""The billing app's tables: the ledger (one row per request) and the rows it refused, the rollups
kept with it (per tenant and day, per model and key, and provider health), budgets and their
alerts; and the decimal sizes money is stored in."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class UsageStatus(models.TextChoices):
    OK = "ok", "OK"
    ERROR = "error", "Error"
    PARTIAL = "partial", "Partial (stream cut short)"
    CACHE_HIT = "cache_hit", "Cache hit"
    REJECTED = "rejected", "Rejected (limit or budget)"


class UsageApi(models.TextChoices):
    """The /v1 door a request came through."""

    CHAT = "chat", "Chat Completions"
    MESSAGES = "messages", "Anthropic Messages"
    RESPONSES = "responses", "OpenAI Responses"
    EMBEDDINGS = "embeddings", "Embeddings"


# Money: USD, 20 digits with 12 decimal places (sub-micro-dollar per request is exact).
MONEY = {"max_digits": 20, "decimal_places": 12, "null": True, "blank": True}
# Sums of many requests (rollups, a budget's spend): 20 whole digits. A request costs under
# $1e8 (its column), so a rollup would need 10^12 of the dearest requests in a day to overflow.
SUM_MONEY = {"max_digits": 32, "decimal_places": 12}


class UsageLog(models.Model):
    """The ledger: one row per request, keyed by its request id (the ``x-request-id`` the
    client got). No prompts, answers or prices are copied here; cost is computed once, with
    the price in force when the request ran."""

    request_id = models.CharField(max_length=40)
    # No index of its own: (tenant, -created_at) below serves tenant lookups.
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="usage", db_index=False)
    api_key = models.ForeignKey("tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The key's project when the request ran (tenants.Project). A plain id, not a foreign key: a
    # deleted project leaves its rows as they were ("deleted project N"), no update of the ledger.
    project_id = models.BigIntegerField(null=True, blank=True)
    model_requested = models.CharField(max_length=255, blank=True, default="")  # alias or id as sent
    provider = models.ForeignKey(
        "providers.Provider", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
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
    # The door. A database default too: workers still running the code before it (a rolling deploy)
    # insert rows without the column.
    api = models.CharField(max_length=10, choices=UsageApi.choices, default=UsageApi.CHAT, db_default=UsageApi.CHAT)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="usage_tenant_created"),
            models.Index(fields=["created_at"], name="usage_created"),
            models.Index(fields=["tenant", "conversation_id"], name="usage_tenant_conversation",
                         condition=models.Q(conversation_id__gt="")),
            # Usage by project reads the ledger (the rollups have no project dimension).
            models.Index(fields=["tenant", "project_id", "-created_at"], name="usage_tenant_project",
                         condition=models.Q(project_id__isnull=False)),
        ]
        constraints = [
            # A constraint rather than unique=True: Django would add a second, prefix-search
            # (varchar_pattern_ops) index on PostgreSQL that nothing uses (12 % of the row).
            models.UniqueConstraint(fields=["request_id"], name="usage_request_id_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.status}"


class UsageDeadLetter(models.Model):
    """A usage row the database refused (billing.ledger sets it aside so the rows behind it are
    written): the row as JSON, as the writer had it, and the database's reason, for support to
    read in the admin and an operator to retry or discard (billing.dead_letter_services). Plain
    ids, no foreign keys: setting a row aside must not fail for the reasons the ledger did."""

    request_id = models.CharField(max_length=40, blank=True, default="")
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    row = models.TextField(help_text="The ledger row as JSON.")
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A retried batch sets a refused row aside once.
            models.UniqueConstraint(fields=["request_id"], name="usagedeadletter_request_id_unique",
                                    condition=~models.Q(request_id="")),
        ]

    def __str__(self) -> str:
        return f"{self.request_id or 'no request id'} (tenant {self.tenant_id})"


class UsageDaily(models.Model):
    """Rollup of the ledger per tenant × day (tenant's time zone) × model × key, kept exact:
    rows are added in the same transaction that inserts their ledger rows. Dashboards and
    budget checks read these, never the ledger. Ids are plain integers (0 = none) so the
    natural key is unique on every database."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="usage_daily")
    day = models.DateField()
    provider_id = models.BigIntegerField(default=0)
    provider_model_id = models.BigIntegerField(default=0)
    api_key_id = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)  # status error, partial or rejected
    cache_hits = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**SUM_MONEY, default=0)
    unpriced = models.BigIntegerField(default=0)  # requests whose cost is unknown (not in `cost`)
    latency_ms_total = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "provider_model_id", "api_key_id"],
                                    name="usagedaily_unique"),
        ]
        indexes = [models.Index(fields=["day"], name="usagedaily_day")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} pm{self.provider_model_id} k{self.api_key_id}"


class TenantDaily(models.Model):
    """Rollup of the ledger per tenant × day (tenant's time zone): the UsageDaily rows of a
    tenant and day summed over models and keys, written in the same transaction. The support
    dashboard reads ~30 of these per tenant instead of every model × key row."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField()
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)  # status error, partial or rejected
    cache_hits = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**SUM_MONEY, default=0)
    unpriced = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day"], name="tenantdaily_unique")]
        indexes = [models.Index(fields=["day"], name="tenantdaily_day")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day}"


class HealthBucket(models.Model):
    """Requests, errors and a latency histogram per provider × model × time slot (5 minutes
    and 1 hour, UTC), written with the ledger: the providers health page reads these instead
    of sorting the latencies of every ledger row of the last day. ``bucket`` is the latency
    bucket ``floor(8 · log2(latency_ms + 1))`` (each ~9 % wide, see billing.health). Kept
    HEALTH_KEEP_DAYS days (the retention task prunes them). Ids are plain integers, 0 = none."""

    span = models.PositiveIntegerField()  # seconds: 300 or 3600
    start = models.DateTimeField()
    provider_id = models.BigIntegerField(default=0)
    provider_model_id = models.BigIntegerField(default=0)
    bucket = models.SmallIntegerField()
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["span", "start", "provider_id", "provider_model_id", "bucket"],
                                    name="healthbucket_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.span}s {self.start} pm{self.provider_model_id} b{self.bucket}"


class EndUserDaily(models.Model):
    """Rollup of the ledger per tenant × day (tenant's time zone) × project × end user × model,
    for requests that name an end user, written in the same transaction as their ledger rows:
    the console's top end users read it, and per-end-user budgets are rebuilt from it when Redis
    loses their buckets. Ids are plain integers (0 = none)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField()
    project_id = models.BigIntegerField(default=0)
    end_user = models.CharField(max_length=128)
    provider_model_id = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**SUM_MONEY, default=0)
    unpriced = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "project_id", "end_user", "provider_model_id"],
                                    name="enduserdaily_unique"),
        ]
        indexes = [
            models.Index(fields=["tenant", "end_user", "day"], name="enduserdaily_user"),
            models.Index(fields=["day"], name="enduserdaily_day"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} p{self.project_id} {self.end_user}"


class BudgetScope(models.TextChoices):
    """Where a budget or limit rule applies. An end-user rule applies to each end user of its
    project (or of the whole tenant) on its own, with nothing stored per end user."""

    TENANT = "tenant", "Whole tenant"
    PROJECT = "project", "One project"
    KEY = "key", "One API key"
    END_USER = "end_user", "Each end user"


class BudgetPeriod(models.TextChoices):
    DAY = "day", "Day"
    WEEK = "week", "Week (Monday to Sunday)"
    MONTH = "month", "Calendar month"
    ROLLING_30D = "rolling_30d", "Rolling 30 days"


class BudgetAction(models.TextChoices):
    ALERT = "alert", "Alert only (keep serving)"
    BLOCK = "block", "Block (429)"
    DOWNGRADE = "downgrade", "Route to a cheaper alias"


# A budget's or limit rule's scope names exactly what it needs: a key for the key scope, a
# project for the project scope, an optional project for the end-user scope, nothing else.
SCOPE_MATCHES_TARGET = (
    models.Q(scope="tenant", api_key__isnull=True, project__isnull=True)
    | models.Q(scope="project", api_key__isnull=True, project__isnull=False)
    | models.Q(scope="key", api_key__isnull=False, project__isnull=True)
    | models.Q(scope="end_user", api_key__isnull=True)
)


def default_thresholds() -> list[int]:
    return [50, 80, 100]


class Budget(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="budgets")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=BudgetScope.choices, default=BudgetScope.TENANT)
    api_key = models.ForeignKey("tenants.ApiKey", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="budgets")
    # The project of a project budget; of an end-user budget, the project whose end users it caps
    # (empty: every end user of the tenant).
    project = models.ForeignKey("tenants.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="budgets")
    # Only requests to this model or alias ("provider:model", a bare id or an alias name; empty: all).
    model = models.CharField(max_length=255, blank=True, default="")
    amount = models.DecimalField(max_digits=20, decimal_places=6, help_text="USD per period.")
    period = models.CharField(max_length=12, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    thresholds = models.JSONField(default=default_thresholds, help_text="Alert at these percents.")
    action = models.CharField(max_length=10, choices=BudgetAction.choices, default=BudgetAction.ALERT)
    downgrade_alias = models.CharField(max_length=100, blank=True, default="")
    webhook_url = models.URLField(max_length=500, blank=True, default="")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "name"]
        constraints = [
            models.CheckConstraint(condition=SCOPE_MATCHES_TARGET, name="budget_scope_matches_target"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="budget_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant_id})"


class LimitRule(models.Model):
    """Requests per minute, tokens per minute and tokens per day in one scope, optionally only
    for one model or alias: "each end user of project support: 30 requests a minute", "the
    tenant: 200,000 tokens a minute on gpt-4o". The tenant's, a project's and a key's own
    limits (their rows' fields) are the unfiltered ones; these add the rest."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="limit_rules")
    scope = models.CharField(max_length=10, choices=BudgetScope.choices, default=BudgetScope.TENANT)
    project = models.ForeignKey("tenants.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="limit_rules")
    api_key = models.ForeignKey("tenants.ApiKey", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="limit_rules")
    model = models.CharField(max_length=255, blank=True, default="")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "pk"]
        constraints = [
            models.CheckConstraint(condition=SCOPE_MATCHES_TARGET, name="limitrule_scope_matches_target"),
            models.CheckConstraint(
                condition=(models.Q(requests_per_minute__isnull=False) | models.Q(tokens_per_minute__isnull=False)
                           | models.Q(tokens_per_day__isnull=False)),
                name="limitrule_has_a_limit",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} limits{' on ' + self.model if self.model else ''} ({self.tenant_id})"


class EndUserBlock(models.Model):
    """An end user refused at the door (403 ``end_user_blocked``): in one project, or in the
    whole tenant when ``project`` is empty."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="end_user_blocks")
    project = models.ForeignKey("tenants.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="end_user_blocks")
    end_user = models.CharField(max_length=128)
    reason = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant_id", "end_user"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "project", "end_user"], name="enduserblock_unique_project",
                                    condition=models.Q(project__isnull=False)),
            models.UniqueConstraint(fields=["tenant", "end_user"], name="enduserblock_unique_tenant",
                                    condition=models.Q(project__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.end_user} blocked ({self.tenant_id})"


class AlertKind(models.TextChoices):
    BUDGET = "budget", "Budget threshold"
    DAILY_COST = "daily_cost", "Daily cost over COST_ALERT_THRESHOLD"


class BudgetAlert(models.Model):
    """One row per budget × period × threshold crossed (or tenant × day for the daily cost
    threshold): the unique constraints make an alert fire once, however many workers look.
    ``delivery_due_at`` (None once done) lets the budget check queue again a delivery that was
    never queued or whose task was lost."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="budget_alerts")
    budget = models.ForeignKey(Budget, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=12, choices=AlertKind.choices, default=AlertKind.BUDGET)
    period_start = models.DateField()
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the budget (100 for daily cost).")
    spent = models.DecimalField(**SUM_MONEY)
    limit = models.DecimalField(max_digits=20, decimal_places=6)
    created_at = models.DateTimeField(default=timezone.now)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # When its delivery task should next run at the latest; None once delivered or given up. The
    # budget check queues an alert overdue by more than a minute again (billing.alerts).
    delivery_due_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["delivery_due_at"], name="alert_delivery_due",
                                condition=models.Q(delivery_due_at__isnull=False))]
        constraints = [
            models.UniqueConstraint(fields=["budget", "period_start", "threshold"], name="alert_once_per_budget",
                                    condition=models.Q(budget__isnull=False)),
            models.UniqueConstraint(fields=["tenant", "kind", "period_start", "threshold"],
                                    name="alert_once_per_tenant_day", condition=models.Q(budget__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.threshold}% {self.period_start} (tenant {self.tenant_id})"
