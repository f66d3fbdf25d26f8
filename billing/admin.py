"""The Django admin for billing: budgets and limit rules (edited through the same services and
rules as the API; budgets with this period's spend), end-user blocks (added and removed through
their services), and read-only views of alerts, the ledger, its rollups, health buckets and
refused rows (retried or discarded through their services), whose big tables are never counted
in full."""

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property

from billing import limit_services, services
from billing.dead_letter_services import usage_dead_letters, usage_dead_letters_discard, usage_dead_letters_retry
from billing.end_users import end_user_block, end_user_clean, end_user_unblock
from billing.health import bucket_bounds
from billing.models import (
    Budget,
    BudgetAlert,
    EndUserBlock,
    EndUserDaily,
    HealthBucket,
    LimitRule,
    TenantDaily,
    UsageDaily,
    UsageDeadLetter,
    UsageLog,
)
from billing.selectors import budget_period, budget_rule, budget_spent
from core.errors import InvalidInput, TollgateError
from core.money import usd
from providers.admin_secrets import Secret, SecretFieldsAdmin, SecretInputs
from tenants.access import Principal

# --- cheap counts for the big tables -----------------------------------------------------------


class CappedCountPaginator(Paginator):
    """COUNT(*) over millions of ledger rows is the slow part of a changelist. An unfiltered
    list uses PostgreSQL's row estimate; a filtered one counts at most CAP rows."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if not query.where and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                               [self.object_list.model._meta.db_table])
                row = cursor.fetchone()
            if row and row[0] > self.CAP:
                return int(row[0])
        return self.object_list.order_by()[: self.CAP + 1].count()


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- budgets -----------------------------------------------------------------------------------


class BudgetForm(SecretInputs, forms.ModelForm):
    """Checked by the same rules as the API (key and alias of the budget's own tenant, thresholds,
    amount). The webhook URL is write-only (see providers.admin_secrets)."""

    class Meta:
        model = Budget
        fields = ["tenant", "name", "scope", "project", "api_key", "model", "amount", "period", "thresholds",
                  "action", "downgrade_alias", "enabled"]

    def clean(self):
        cleaned = super().clean()
        tenant = cleaned.get("tenant") or (self.instance.tenant if self.instance.pk else None)
        if tenant is None or self.errors:
            return cleaned
        data = {f: cleaned.get(f) for f in ("name", "scope", "amount", "period", "thresholds", "action",
                                            "downgrade_alias", "enabled", "model")}
        data["api_key"] = cleaned["api_key"].pk if cleaned.get("api_key") else None
        data["project"] = cleaned["project"].pk if cleaned.get("project") else None
        data.update(self.secret_changes())
        try:
            services.budget_validate(tenant=tenant, data=data, budget=self.instance if self.instance.pk else None)
        except InvalidInput as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, exc.message)
        self.service_data = data
        return cleaned


@admin.register(Budget)
class BudgetAdmin(SecretFieldsAdmin):
    form = BudgetForm
    secret_fields = {
        "webhook_url": Secret(label="webhook URL", hint=services.mask_url, max_length=500,
                              help_text="Slack or any https:// endpoint."),
    }
    list_display = ["name", "tenant", "scope", "project", "api_key", "model", "amount", "period", "action", "enabled",
                    "status"]
    list_filter = ["scope", "period", "action", "enabled"]
    search_fields = ["name", "tenant__slug", "tenant__name", "model"]
    list_select_related = ["tenant", "api_key", "project"]
    autocomplete_fields = ["tenant"]
    raw_id_fields = ["api_key", "project"]
    readonly_fields = ["created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return ["tenant", *fields] if obj is not None else fields  # a budget stays in its tenant

    @admin.display(description="this period")
    def status(self, obj: Budget) -> str:
        spent = budget_spent(budget=obj, period=budget_period(obj))
        if spent is None:
            return budget_rule(obj)
        percent = spent * 100 / obj.amount if obj.amount else 0
        return f"{usd(spent, places=2)} / {usd(obj.amount, places=2)} ({percent:.0f}%)"

    def save_model(self, request, obj, form, change):
        actor = Principal(user=request.user)
        data = form.service_data
        if change:
            saved = services.budget_update(budget=Budget.objects.get(pk=obj.pk), data=data, actor=actor)
        else:
            saved = services.budget_create(tenant=form.cleaned_data["tenant"], data=data, actor=actor)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.budget_delete(budget=obj, actor=Principal(user=request.user))

    def delete_queryset(self, request, queryset):
        for budget in queryset.select_related("tenant"):
            services.budget_delete(budget=budget, actor=Principal(user=request.user))


# --- limit rules ----------------------------------------------------------------------------------


class LimitRuleForm(forms.ModelForm):
    """Checked by the same rules as the API (target of the rule's own tenant, a model it has, at
    least one limit, one rule per target and model)."""

    class Meta:
        model = LimitRule
        fields = ["tenant", "scope", "project", "api_key", "model", "requests_per_minute", "tokens_per_minute",
                  "tokens_per_day", "enabled"]

    def clean(self):
        cleaned = super().clean()
        tenant = cleaned.get("tenant") or (self.instance.tenant if self.instance.pk else None)
        if tenant is None or self.errors:
            return cleaned
        data = {f: cleaned.get(f) for f in ("scope", "model", "requests_per_minute", "tokens_per_minute",
                                            "tokens_per_day", "enabled")}
        data["model"] = data["model"] or ""
        data["api_key"] = cleaned["api_key"].pk if cleaned.get("api_key") else None
        data["project"] = cleaned["project"].pk if cleaned.get("project") else None
        try:
            limit_services.limit_rule_validate(tenant=tenant, data=data,
                                               rule=self.instance if self.instance.pk else None)
        except TollgateError as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, exc.message)
        self.service_data = data
        return cleaned


@admin.register(LimitRule)
class LimitRuleAdmin(admin.ModelAdmin):
    form = LimitRuleForm
    list_display = ["__str__", "tenant", "scope", "project", "api_key", "model", "requests_per_minute",
                    "tokens_per_minute", "tokens_per_day", "enabled"]
    list_filter = ["scope", "enabled"]
    search_fields = ["tenant__slug", "tenant__name", "model", "project__slug"]
    list_select_related = ["tenant", "api_key", "project"]
    autocomplete_fields = ["tenant"]
    raw_id_fields = ["api_key", "project"]
    readonly_fields = ["created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return ["tenant", *fields] if obj is not None else fields  # a rule stays in its tenant

    def save_model(self, request, obj, form, change):
        actor = Principal(user=request.user)
        if change:
            saved = limit_services.limit_rule_update(rule=LimitRule.objects.get(pk=obj.pk), data=form.service_data,
                                                     actor=actor)
        else:
            saved = limit_services.limit_rule_create(tenant=form.cleaned_data["tenant"], data=form.service_data,
                                                     actor=actor)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        limit_services.limit_rule_delete(rule=obj, actor=Principal(user=request.user))

    def delete_queryset(self, request, queryset):
        for rule in queryset.select_related("tenant"):
            limit_services.limit_rule_delete(rule=rule, actor=Principal(user=request.user))


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "kind", "budget", "threshold", "period_start", "spent", "limit",
                    "email_sent_at", "webhook_sent_at", "webhook_attempts", "delivery_due_at"]
    list_filter = ["kind", "threshold", "created_at", ("email_sent_at", admin.EmptyFieldListFilter),
                   ("webhook_sent_at", admin.EmptyFieldListFilter), ("delivery_due_at", admin.EmptyFieldListFilter)]
    search_fields = ["tenant__slug", "tenant__name", "budget__name"]
    list_select_related = ["tenant", "budget"]


# --- end-user blocks -------------------------------------------------------------------------------


class EndUserBlockForm(forms.ModelForm):
    """The same rules as the API: an end user the gateway can record, a project of the block's
    own tenant (empty: every project)."""

    class Meta:
        model = EndUserBlock
        fields = ["tenant", "project", "end_user", "reason"]

    def clean(self):
        cleaned = super().clean()
        try:
            cleaned["end_user"] = end_user_clean(cleaned.get("end_user"))
        except InvalidInput as exc:
            self.add_error("end_user", exc.message)
        project, tenant = cleaned.get("project"), cleaned.get("tenant")
        if project is not None and tenant is not None and project.tenant_id != tenant.pk:
            self.add_error("project", f"Project '{project.slug}' belongs to another tenant; choose one of "
                                      f"'{tenant.slug}' or leave it empty (every project).")
        return cleaned


@admin.register(EndUserBlock)
class EndUserBlockAdmin(admin.ModelAdmin):
    """Added and removed through the services (audited; the gateways reload). A block is not
    edited: remove it and add another."""

    form = EndUserBlockForm
    list_display = ["end_user", "tenant", "project", "reason", "created_by", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["end_user", "tenant__slug", "project__slug"]
    list_select_related = ["tenant", "project", "created_by"]
    autocomplete_fields = ["tenant"]
    raw_id_fields = ["project"]

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)  # the list, not a block

    def save_model(self, request, obj, form, change):
        block, _ = end_user_block(tenant=form.cleaned_data["tenant"], project=form.cleaned_data["project"],
                                  end_user=form.cleaned_data["end_user"], reason=form.cleaned_data["reason"],
                                  actor=Principal(user=request.user))
        obj.pk = block.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        end_user_unblock(block=obj, actor=Principal(user=request.user))

    def delete_queryset(self, request, queryset):
        for block in queryset.select_related("tenant", "project"):
            end_user_unblock(block=block, actor=Principal(user=request.user))


# --- usage (big, append-only tables) -----------------------------------------------------------


class BigTableAdmin(ReadOnlyAdmin):
    """Read-only, and never COUNT(*) over the whole table."""

    show_full_result_count = False
    paginator = CappedCountPaginator


class TenantDayAdmin(BigTableAdmin):
    list_filter = ["day"]
    search_fields = ["=tenant__slug"]
    list_select_related = ["tenant"]


@admin.register(UsageDaily)
class UsageDailyAdmin(TenantDayAdmin):
    list_display = ["day", "tenant", "provider_model_id", "api_key_id", "requests", "errors", "input_tokens",
                    "output_tokens", "cost", "unpriced"]


@admin.register(EndUserDaily)
class EndUserDailyAdmin(TenantDayAdmin):
    list_display = ["day", "tenant", "project_id", "end_user", "provider_model_id", "requests", "errors",
                    "input_tokens", "output_tokens", "cost", "unpriced"]
    search_fields = ["=tenant__slug", "=end_user"]
    search_help_text = "Exact tenant slug or end user."


@admin.register(TenantDaily)
class TenantDailyAdmin(TenantDayAdmin):
    list_display = ["day", "tenant", "requests", "errors", "cache_hits", "input_tokens", "output_tokens", "cost",
                    "unpriced"]


@admin.register(HealthBucket)
class HealthBucketAdmin(BigTableAdmin):
    list_display = ["start", "span", "provider_id", "provider_model_id", "latency_range", "requests", "errors"]
    list_filter = ["span", "start"]
    search_fields = ["=provider_id", "=provider_model_id"]

    @admin.display(description="latency (ms)")
    def latency_range(self, obj: HealthBucket) -> str:
        low, high = bucket_bounds(obj.bucket)
        return f"{low:.0f}–{high:.0f}"


@admin.register(UsageLog)
class UsageLogAdmin(BigTableAdmin):
    list_display = ["request_id", "tenant", "api", "model_requested", "status", "tokens", "cost", "created_at"]
    list_filter = ["api", "status", "stream", "created_at"]
    # Exact matches: request_id has a unique index; a substring search would scan the ledger.
    search_fields = ["=request_id", "=conversation_id"]
    search_help_text = "Exact request id (x-request-id) or conversation id."
    list_select_related = ["tenant"]
    raw_id_fields = ["tenant", "api_key", "provider", "provider_model"]

    @admin.display(description="tokens (in / out)")
    def tokens(self, obj: UsageLog) -> str:
        return f"{obj.input_tokens} / {obj.output_tokens}"


@admin.register(UsageDeadLetter)
class UsageDeadLetterAdmin(ReadOnlyAdmin):
    """Rows the database refused (billing.ledger), with its reason: read-only, but for the
    "retry" and "discard" actions (billing/dead_letter_services.py), open to users who may
    delete dead letters (superusers; support staff only read them)."""

    list_display = ["created_at", "request_id", "tenant_id", "short_reason"]
    actions = ["retry", "discard"]

    def has_handle_permission(self, request) -> bool:
        return request.user.has_perm("billing.delete_usagedeadletter")

    @admin.action(description="Retry: write the selected rows to the ledger", permissions=["handle"])
    def retry(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        result = usage_dead_letters_retry(letters=usage_dead_letters(ids=ids), actor=Principal(user=request.user))
        if result.written:
            self.message_user(request, f"{len(result.written)} row(s) written to the ledger.", messages.SUCCESS)
        for letter_id, reason in result.kept.items():
            self.message_user(request, f"Dead letter {letter_id} kept: {reason.splitlines()[0][:300]}",
                              messages.WARNING)

    @admin.action(description="Discard the selected rows (audited)", permissions=["handle"])
    def discard(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        count = usage_dead_letters_discard(letters=usage_dead_letters(ids=ids), actor=Principal(user=request.user))
        self.message_user(request, f"{count} dead letter(s) discarded; each row is kept in the audit log.",
                          messages.SUCCESS)
    list_filter = ["created_at"]
    search_fields = ["=request_id", "=tenant_id"]
    search_help_text = "Exact request id (x-request-id) or tenant id."
    fields = ["request_id", "tenant_id", "created_at", "reason", "row"]

    @admin.display(description="reason")
    def short_reason(self, obj: UsageDeadLetter) -> str:
        return obj.reason.splitlines()[0][:120] if obj.reason else ""
