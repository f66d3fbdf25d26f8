"""Management REST API for limit rules (/api/limits): list, create, read, change, delete. Views
parse, authorize, call a service or selector, and render.

Viewers (and support staff, with ?tenant=) read; admins and owners write. A member with roles on
some projects only reads the rules of those projects and, where they are its admin, creates,
changes and deletes them (scope project or end_user with that project, or key with one of its
keys)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from billing import limit_selectors, limit_services
from billing.api import TargetProjectOut, choice
from billing.models import BudgetScope, LimitRule
from billing.targets import target_change_projects
from core.drf import StrictBooleanField, StrictCharField, StrictIntegerField, StrictSerializer, paged, validated
from tenants.api import ProjectRefField
from tenants.drf import TENANT_PARAM, TenantAPIView

LIMITS = limit_services.LIMITS


class LimitRuleIn(StrictSerializer):
    scope = choice(BudgetScope.choices, required=False,
                   help_text="tenant, project (given as project), key (given as api_key) or end_user (each end user "
                             "on their own: of the project given as project, or of the whole tenant). Default: "
                             "tenant; key when api_key is given, project when project is.")
    project = ProjectRefField(required=False, allow_null=True,
                              help_text="Project id or slug (scope project; or end_user: whose end users).")
    api_key = StrictIntegerField(required=False, allow_null=True, min_value=1,
                                 help_text="Id of one of the tenant's API keys (scope key).")
    model = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=255,
                            help_text="Only requests to this alias or model (provider:model or a bare id); empty: "
                                      "every model.")
    requests_per_minute = StrictIntegerField(required=False, allow_null=True, min_value=1,
                                             max_value=LIMITS["requests_per_minute"])
    tokens_per_minute = StrictIntegerField(required=False, allow_null=True, min_value=1,
                                           max_value=LIMITS["tokens_per_minute"],
                                           help_text="Input and output tokens a minute.")
    tokens_per_day = StrictIntegerField(required=False, allow_null=True, min_value=1,
                                        max_value=LIMITS["tokens_per_day"],
                                        help_text="Input and output tokens a day (the tenant's time zone).")
    enabled = StrictBooleanField(required=False)


class LimitRuleOut(serializers.ModelSerializer):
    project = TargetProjectOut(allow_null=True, help_text="The project of scope project or end_user; null otherwise.")
    api_key = serializers.IntegerField(source="api_key_id", allow_null=True)
    rule = serializers.SerializerMethodField(help_text='The rule in words, e.g. "each end user of project support: '
                                                       '30 requests a minute".')

    class Meta:
        model = LimitRule
        fields = ["id", "scope", "project", "api_key", "model", "requests_per_minute", "tokens_per_minute",
                  "tokens_per_day", "enabled", "rule", "created_at", "updated_at"]

    def get_rule(self, rule) -> str:
        return limit_selectors.limit_rule_text(rule)


class LimitRuleListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=LimitRuleOut(many=True),
                   summary="Limit rules of the tenant (a project member: those of their projects)")
    def get(self, request):
        access = self.access(request, projects=True)
        rules = limit_selectors.limit_rule_list(tenant=access.tenant, project_ids=access.project_ids)
        return paged(self, request, rules.order_by("scope", "id"), LimitRuleOut)

    @extend_schema(parameters=[TENANT_PARAM], request=LimitRuleIn, responses={201: LimitRuleOut},
                   summary="Add requests-per-minute, tokens-per-minute or tokens-per-day limits in a scope",
                   description="At least one limit. One rule per scope target and model: a second one is a 409 "
                               "naming the rule to change instead.")
    def post(self, request):
        access = self.access(request, projects=True)
        projects = access.administered_projects(doing="creating limit rules")
        data = validated(LimitRuleIn, request.data)
        rule = limit_services.limit_rule_create(tenant=access.tenant, data=dict(data), actor=access.principal,
                                                projects=projects)
        return Response(LimitRuleOut(limit_selectors.limit_rule_get(tenant=access.tenant, rule_id=rule.pk)).data,
                        status=201)


def _rule_to_change(view, request, rule_id: int, *, doing: str):
    access = view.access(request, projects=True)
    rule = limit_selectors.limit_rule_get(tenant=access.tenant, rule_id=rule_id, project_ids=access.project_ids)
    return access, rule, target_change_projects(access, rule, doing=doing, what="Limit rule")


class LimitRuleDetailAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=LimitRuleOut, summary="One limit rule")
    def get(self, request, rule_id: int):
        access = self.access(request, projects=True)
        return Response(LimitRuleOut(limit_selectors.limit_rule_get(tenant=access.tenant, rule_id=rule_id,
                                                                    project_ids=access.project_ids)).data)

    @extend_schema(parameters=[TENANT_PARAM], request=LimitRuleIn, responses=LimitRuleOut,
                   summary="Change a limit rule",
                   description="Fields that are sent are changed; fields left out keep their value; null clears a "
                               "limit (one must stay). PATCH behaves the same.")
    def put(self, request, rule_id: int):
        access, rule, projects = _rule_to_change(self, request, rule_id, doing="changing limit rules")
        data = validated(LimitRuleIn, request.data)
        limit_services.limit_rule_update(rule=rule, data=dict(data), actor=access.principal, projects=projects)
        return Response(LimitRuleOut(limit_selectors.limit_rule_get(tenant=access.tenant, rule_id=rule_id)).data)

    @extend_schema(parameters=[TENANT_PARAM], request=LimitRuleIn, responses=LimitRuleOut,
                   summary="Change a limit rule (same as PUT)")
    def patch(self, request, rule_id: int):
        return self.put(request, rule_id)

    @extend_schema(parameters=[TENANT_PARAM], responses={204: None}, summary="Delete a limit rule")
    def delete(self, request, rule_id: int):
        access, rule, _ = _rule_to_change(self, request, rule_id, doing="deleting limit rules")
        limit_services.limit_rule_delete(rule=rule, actor=access.principal)
        return Response(status=204)
