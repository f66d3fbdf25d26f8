"""Management REST API for budgets: CRUD, live status and alert history. Views parse,
authorize, call a service or selector, and render; nothing else happens here.

Viewers (and support staff, with ?tenant=) read; admins and owners write. A member with roles
on some projects only reads the budgets of those projects and, where they are its admin,
creates, changes and deletes them (scope project or end_user with that project, or key with
one of its keys)."""

from datetime import timedelta

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from billing import selectors, services
from billing.models import (
    SUM_MONEY,
    AlertKind,
    Budget,
    BudgetAction,
    BudgetAlert,
    BudgetPeriod,
    BudgetScope,
)
from billing.targets import target_change_projects
from core.drf import (
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
    paged,
    validated,
)
from core.errors import InvalidInput
from tenants.api import ProjectRefField
from tenants.drf import TENANT_PARAM, TenantAPIView

MONEY = {"max_digits": SUM_MONEY["max_digits"], "decimal_places": SUM_MONEY["decimal_places"]}


def choice(choices, **kwargs) -> serializers.ChoiceField:
    allowed = ", ".join(value for value, _ in choices)
    return serializers.ChoiceField(
        choices=choices,
        error_messages={"invalid_choice": f'"{{input}}" is not a valid choice; use one of: {allowed}.'},
        **kwargs,
    )


# --- serializers ---------------------------------------------------------------------------


class BudgetIn(StrictSerializer):
    name = StrictCharField(max_length=100)
    scope = choice(BudgetScope.choices, required=False,
                   help_text="tenant (every key), project (one project's keys, given as project), key (one key, "
                             "given as api_key) or end_user (each end user on their own: of the project given as "
                             "project, or of the whole tenant). Default: tenant; key when api_key is given, project "
                             "when project is.")
    project = ProjectRefField(required=False, allow_null=True,
                              help_text="Project id or slug: the project of scope project, or whose end users an "
                                        "end_user budget caps (null: every end user of the tenant).")
    api_key = StrictIntegerField(required=False, allow_null=True, min_value=1,
                                 help_text="Id of one of the tenant's API keys (scope key).")
    model = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=255,
                            help_text="Only requests to this alias or model (provider:model or a bare id) count; "
                                      "empty: every model.")
    amount = serializers.DecimalField(max_digits=20, decimal_places=6, min_value=0,
                                      help_text='USD per period, e.g. "100.00".')
    period = choice(BudgetPeriod.choices, required=False,
                    help_text="In the tenant's time zone. Default: month.")
    thresholds = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=1000), required=False, min_length=1, max_length=10,
        help_text="Percents that send an alert, 1 to 10 distinct values in 1..1000. Default: [50, 80, 100].",
    )
    action = choice(BudgetAction.choices, required=False, help_text="What happens at 100 %. Default: alert.")
    downgrade_alias = StrictCharField(required=False, allow_blank=True, max_length=100,
                                      help_text="The alias to route to when action is downgrade.")
    webhook_url = StrictCharField(required=False, allow_blank=True, max_length=500, write_only=True,
                                  help_text="Alerts are also POSTed here as JSON (Slack-compatible `text`). "
                                            "Never returned; empty clears it.")
    enabled = StrictBooleanField(required=False)


class BudgetUpdateIn(BudgetIn):
    name = StrictCharField(max_length=100, required=False)
    amount = serializers.DecimalField(max_digits=20, decimal_places=6, min_value=0, required=False)


class TargetProjectOut(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()


class BudgetOut(serializers.ModelSerializer):
    project = TargetProjectOut(allow_null=True, help_text="The project of scope project or end_user; null otherwise.")
    api_key = serializers.IntegerField(source="api_key_id", allow_null=True)
    api_key_status = serializers.SerializerMethodField(help_text="active, expired or revoked; null unless scope is "
                                                                 "key.")
    rule = serializers.SerializerMethodField(help_text='The budget in words, e.g. "$2.00 per day for each end user '
                                                       'of project support".')
    amount = serializers.DecimalField(max_digits=20, decimal_places=6)
    currency = serializers.SerializerMethodField()
    webhook_url_hint = serializers.SerializerMethodField(help_text="Masked; the URL itself is never returned.")

    class Meta:
        model = Budget
        fields = ["id", "name", "scope", "project", "api_key", "api_key_status", "model", "amount", "currency",
                  "period", "thresholds", "action", "downgrade_alias", "webhook_url_hint", "enabled", "rule",
                  "created_at", "updated_at"]

    def get_api_key_status(self, budget) -> str | None:
        return budget.api_key.status if budget.api_key_id else None

    def get_rule(self, budget) -> str:
        return selectors.budget_rule(budget)

    def get_currency(self, budget) -> str:
        return "USD"

    def get_webhook_url_hint(self, budget) -> str | None:
        return services.mask_url(budget.webhook_url) or None


class PeriodOut(serializers.Serializer):
    start = serializers.DateField(help_text="First day counted.")
    end = serializers.DateField(help_text="Last day counted (inclusive).")
    resets_at = serializers.CharField(help_text="When the amount starts over: ISO 8601 in the tenant's time zone.")
    timezone = serializers.CharField()


class BudgetStatusOut(serializers.Serializer):
    budget_id = serializers.IntegerField()
    period = serializers.SerializerMethodField()
    amount = serializers.DecimalField(max_digits=20, decimal_places=6)
    spent = serializers.DecimalField(**MONEY, allow_null=True,
                                     help_text="Known cost in this period, from the daily rollups; null for an "
                                               "end_user budget (each end user has their own).")
    reserved = serializers.DecimalField(**MONEY, allow_null=True,
                                        help_text="Held by requests in flight; null when Redis cannot be read (or "
                                                  "for an end_user budget).")
    remaining = serializers.DecimalField(**MONEY, allow_null=True,
                                         help_text="amount - spent - reserved, never below 0; null for end_user.")
    percent_used = serializers.DecimalField(max_digits=12, decimal_places=2, coerce_to_string=False,
                                            allow_null=True, help_text="spent / amount × 100; null for end_user.")
    thresholds_crossed = serializers.ListField(child=serializers.IntegerField())
    action = serializers.CharField()
    state = serializers.ChoiceField(choices=["ok", "alerting", "exhausted", "per_end_user"],
                                    help_text="exhausted: spent + reserved reached the amount; alerting: a "
                                              "threshold is crossed; ok otherwise; per_end_user: an end_user "
                                              "budget, which has no single figure (see rule).")
    rule = serializers.CharField(help_text="The budget in words.")

    @extend_schema_field(PeriodOut)
    def get_period(self, status) -> dict:
        p = status.period
        return PeriodOut({"start": p.start, "end": p.end - timedelta(days=1), "resets_at": p.resets_at.isoformat(),
                          "timezone": status.timezone}).data


class BudgetAlertOut(serializers.ModelSerializer):
    budget_id = serializers.IntegerField(allow_null=True)
    spent = serializers.DecimalField(**MONEY)
    limit = serializers.DecimalField(max_digits=20, decimal_places=6)
    delivery_error = serializers.CharField(source="last_error")

    class Meta:
        model = BudgetAlert
        fields = ["id", "kind", "budget_id", "threshold", "period_start", "spent", "limit", "created_at",
                  "email_sent_at", "webhook_sent_at", "webhook_attempts", "delivery_error"]


KIND_PARAM = OpenApiParameter("kind", str, enum=AlertKind.values, required=False,
                              description="Only alerts of this kind.")


# --- views ---------------------------------------------------------------------------------


class BudgetListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=BudgetOut(many=True),
                   summary="Budgets of the tenant (a project member: those of their projects)")
    def get(self, request):
        access = self.access(request, projects=True)
        budgets = selectors.budget_list(tenant=access.tenant, project_ids=access.project_ids)
        return paged(self, request, budgets.order_by("name", "id"), BudgetOut)

    @extend_schema(parameters=[TENANT_PARAM], request=BudgetIn, responses={201: BudgetOut},
                   summary="Create a budget for the tenant, a project, a key or each end user")
    def post(self, request):
        access = self.access(request, projects=True)
        projects = access.administered_projects(doing="creating budgets")
        data = validated(BudgetIn, request.data)
        budget = services.budget_create(tenant=access.tenant, data=dict(data), actor=access.principal,
                                        projects=projects)
        return Response(BudgetOut(selectors.budget_get(tenant=access.tenant, budget_id=budget.pk)).data, status=201)


def _budget_to_change(view, request, budget_id: int, *, doing: str):
    """The caller's access, the budget and the projects the caller manages (None: all)."""
    access = view.access(request, projects=True)
    budget = selectors.budget_get(tenant=access.tenant, budget_id=budget_id, project_ids=access.project_ids)
    return access, budget, target_change_projects(access, budget, doing=doing, what="Budget")


class BudgetDetailAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=BudgetOut, summary="One budget")
    def get(self, request, budget_id: int):
        access = self.access(request, projects=True)
        return Response(BudgetOut(selectors.budget_get(tenant=access.tenant, budget_id=budget_id,
                                                       project_ids=access.project_ids)).data)

    @extend_schema(parameters=[TENANT_PARAM], request=BudgetUpdateIn, responses=BudgetOut,
                   summary="Change a budget",
                   description="Fields that are sent are changed; fields left out keep their value. "
                               "PATCH behaves the same.")
    def put(self, request, budget_id: int):
        access, budget, projects = _budget_to_change(self, request, budget_id, doing="changing budgets")
        data = validated(BudgetUpdateIn, request.data)
        services.budget_update(budget=budget, data=dict(data), actor=access.principal, projects=projects)
        return Response(BudgetOut(selectors.budget_get(tenant=access.tenant, budget_id=budget_id)).data)

    @extend_schema(parameters=[TENANT_PARAM], request=BudgetUpdateIn, responses=BudgetOut,
                   summary="Change a budget (same as PUT)")
    def patch(self, request, budget_id: int):
        return self.put(request, budget_id)

    @extend_schema(parameters=[TENANT_PARAM], responses={204: None},
                   summary="Delete a budget and its alert history")
    def delete(self, request, budget_id: int):
        access, budget, _ = _budget_to_change(self, request, budget_id, doing="deleting budgets")
        services.budget_delete(budget=budget, actor=access.principal)
        return Response(status=204)


class BudgetStatusAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=BudgetStatusOut,
                   summary="Spend, reservations and what is left in the current period")
    def get(self, request, budget_id: int):
        access = self.access(request, projects=True)
        budget = selectors.budget_get(tenant=access.tenant, budget_id=budget_id, project_ids=access.project_ids)
        return Response(BudgetStatusOut(selectors.budget_status(tenant=access.tenant, budget=budget)).data)


class BudgetAlertListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=BudgetAlertOut(many=True),
                   summary="Alerts a budget has sent, newest first")
    def get(self, request, budget_id: int):
        access = self.access(request, projects=True)
        budget = selectors.budget_get(tenant=access.tenant, budget_id=budget_id, project_ids=access.project_ids)
        return paged(self, request, BudgetAlert.objects.filter(tenant=access.tenant, budget=budget), BudgetAlertOut)


class TenantAlertListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM, KIND_PARAM], responses=BudgetAlertOut(many=True),
                   operation_id="budget_alerts_all_list",
                   summary="Every alert of the tenant (budgets and the daily cost threshold), newest first")
    def get(self, request):
        access = self.access(request)
        alerts = BudgetAlert.objects.filter(tenant=access.tenant)
        kind = request.query_params.get("kind")
        if kind:
            if kind not in AlertKind.values:
                raise InvalidInput(f"kind must be one of: {', '.join(AlertKind.values)}.", field="kind")
            alerts = alerts.filter(kind=kind)
        return paged(self, request, alerts, BudgetAlertOut)
