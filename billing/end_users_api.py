"""Management REST API for end users: the top end users of a period (from the EndUserDaily
rollup) and end-user blocks. Views parse, authorize, call a service or selector, and render.

Every member reads (viewers, support staff with ?tenant=, admin keys); tenant admins and owners
block and unblock anywhere. A member with roles on some projects only sees those projects' end
users and blocks, and a project admin blocks and unblocks in their projects only."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from billing import end_users
from billing.models import SUM_MONEY, EndUserBlock
from core.drf import StrictCharField, StrictSerializer, paged, validated
from core.errors import Forbidden, InvalidInput, NotFound
from tenants.access import TenantAccess
from tenants.api import ProjectRefField
from tenants.drf import TENANT_PARAM, TenantAPIView
from tenants.models import Project, Role
from tenants.selectors import project_get, project_list

MONEY = {"max_digits": SUM_MONEY["max_digits"], "decimal_places": SUM_MONEY["decimal_places"]}


def _project_of(access: TenantAccess, wanted, *, field: str = "project") -> Project:
    """A project the caller may see, by id or slug; 400 naming the ones they may otherwise."""
    try:
        return project_get(tenant=access.tenant, project=wanted, project_ids=access.project_ids)
    except NotFound:
        slugs = list(project_list(tenant=access.tenant, project_ids=access.project_ids)
                     .values_list("slug", flat=True)[:20])
        raise InvalidInput(f"project {wanted!r} is not a project of tenant '{access.tenant.slug}'"
                           f"{' you can see' if access.project_ids is not None else ''}; projects: "
                           f"{', '.join(slugs) or 'none'}.", field=field) from None


# --- input ---------------------------------------------------------------------------------


class TopIn(StrictSerializer):
    period = serializers.ChoiceField(
        choices=list(end_users.PERIODS), default=end_users.DEFAULT_PERIOD,
        help_text="today, 7d, 30d (local days of the tenant ending today) or month (since the 1st).",
        error_messages={"invalid_choice": f"'{{input}}' is not a period; use one of {', '.join(end_users.PERIODS)}."},
    )
    project = serializers.CharField(required=False, allow_blank=True, max_length=50,
                                    help_text="Only this project's end users (id or slug).")
    search = serializers.CharField(required=False, allow_blank=True, max_length=end_users.MAX_END_USER,
                                   help_text="Only end users whose name contains this (case-insensitive).")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=end_users.TOP_LIMIT_MAX, default=50,
                                     help_text=f"Most rows (default 50, at most {end_users.TOP_LIMIT_MAX}).")


class BlockIn(StrictSerializer):
    end_user = StrictCharField(allow_blank=True, trim_whitespace=False,
                               help_text=f"The end user as your app sends it (1 to {end_users.MAX_END_USER} "
                               "characters).")
    project = ProjectRefField(required=False, allow_null=True,
                              help_text="Block in this project only (id or slug); null or left out: in every "
                              "project of the tenant (tenant admins and owners only).")
    reason = StrictCharField(required=False, allow_blank=True, trim_whitespace=False,
                             help_text=f"Why (shown in the console and the audit trail; at most "
                             f"{end_users.MAX_REASON} characters).")


# --- output --------------------------------------------------------------------------------


class ProjectRefOut(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField(allow_null=True, help_text="null: the project was deleted since.")


class BlockOut(serializers.ModelSerializer):
    project = serializers.SerializerMethodField(help_text="null: blocked in every project of the tenant.")
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = EndUserBlock
        fields = ["id", "end_user", "project", "reason", "created_by", "created_at"]

    @extend_schema_field(ProjectRefOut(allow_null=True))
    def get_project(self, block) -> dict | None:
        return None if block.project_id is None else {"id": block.project_id, "slug": block.project.slug}

    def get_created_by(self, block) -> str | None:
        return block.created_by.get_username() if block.created_by else None


class OverBudgetOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    amount = serializers.DecimalField(max_digits=20, decimal_places=6)
    spent = serializers.DecimalField(**MONEY, help_text="The end user's spend in the budget's current period.")
    action = serializers.CharField()


class EndUserOut(serializers.Serializer):
    end_user = serializers.CharField()
    project = serializers.SerializerMethodField(help_text="null: requests of keys without a project.")
    requests = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Status error, partial or rejected.")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    tokens = serializers.IntegerField(help_text="input_tokens + output_tokens.")
    cost = serializers.DecimalField(**MONEY, help_text="USD, the sum of the known costs.")
    unpriced_requests = serializers.IntegerField(source="unpriced", help_text="Requests of unknown cost.")
    last_seen = serializers.DateField(source="last_day", help_text="The last day (tenant's time zone) with a request.")
    status = serializers.ChoiceField(
        choices=["blocked", "blocked_in_project", "over_budget", "ok"],
        help_text="blocked: in every project; blocked_in_project: in this row's project; over_budget: at or "
        "over an enabled end-user budget in its current period; ok otherwise.")
    blocks = BlockOut(many=True, help_text="The blocks that refuse this end user's requests in this project.")
    over_budgets = serializers.SerializerMethodField()

    @extend_schema_field(ProjectRefOut(allow_null=True))
    def get_project(self, row) -> dict | None:
        return None if not row.project_id else {"id": row.project_id, "slug": row.project_slug}

    @extend_schema_field(OverBudgetOut(many=True))
    def get_over_budgets(self, row) -> list:
        return OverBudgetOut([{"id": b.pk, "name": b.name, "amount": b.amount, "spent": spent, "action": b.action}
                              for b, spent in row.over], many=True).data


class TopOut(serializers.Serializer):
    period = serializers.CharField()
    start = serializers.DateField(help_text="First day counted (tenant's time zone).")
    end = serializers.DateField(help_text="Last day counted (today).")
    timezone = serializers.CharField()
    results = EndUserOut(many=True, source="rows")


# --- views ---------------------------------------------------------------------------------


class EndUserTopAPI(TenantAPIView):
    @extend_schema(
        parameters=[TENANT_PARAM, TopIn], responses=TopOut,
        summary="The end users who spent most in a period, with their status",
        description="One row per end user and project, dearest first, from the end-user daily rollup. "
        "A project member sees their projects' end users only.",
    )
    def get(self, request):
        access = self.access(request, projects=True)
        data = validated(TopIn, {k: v for k, v in request.query_params.items() if k != "tenant"})
        project = _project_of(access, data["project"]) if data.get("project") else None
        top = end_users.top_end_users(tenant=access.tenant, period=data["period"], project=project,
                                      limit=data["limit"], search=data.get("search", ""),
                                      project_ids=access.project_ids)
        return Response(TopOut(top).data)


BLOCK_PROJECT_PARAM = OpenApiParameter("project", str, required=False, description="Only this project's blocks.")


class EndUserBlockListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM, BLOCK_PROJECT_PARAM], responses=BlockOut(many=True),
                   summary="Blocked end users (a project member: blocks in their projects)")
    def get(self, request):
        access = self.access(request, projects=True)
        blocks = end_users.blocked_end_users(tenant=access.tenant, project_ids=access.project_ids)
        wanted = request.query_params.get("project")
        if wanted:
            blocks = blocks.filter(project=_project_of(access, wanted))
        return paged(self, request, blocks, BlockOut)

    @extend_schema(
        parameters=[TENANT_PARAM], request=BlockIn, responses={201: BlockOut, 200: BlockOut},
        summary="Block an end user in one project or in the whole tenant",
        description="Their requests are refused with 403 end_user_blocked from the gateway's next request. "
        "Idempotent: an end user already blocked there answers 200 with the existing block (its reason "
        "unchanged); a new block answers 201.",
    )
    def post(self, request):
        access = self.access(request, projects=True)
        data = validated(BlockIn, request.data)
        project = _project_of(access, data["project"]) if data.get("project") is not None else None
        if project is None:
            if access.project_roles is not None:
                raise Forbidden("A block in every project needs a role in the whole tenant; name one of your "
                                "projects (\"project\": id or slug) to block the end user there.")
            access.require(Role.ADMIN, doing="blocking end users")
        else:
            access.require_in_project(project, Role.ADMIN, doing="blocking end users")
        block, created = end_users.end_user_block(tenant=access.tenant, end_user=data["end_user"], project=project,
                                                  reason=data.get("reason", ""), actor=access.principal)
        block = end_users.end_user_block_get(tenant=access.tenant, block_id=block.pk)
        return Response(BlockOut(block).data, status=201 if created else 200)


class EndUserBlockDetailAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=BlockOut, summary="One end-user block")
    def get(self, request, block_id: int):
        access = self.access(request, projects=True)
        return Response(BlockOut(end_users.end_user_block_get(tenant=access.tenant, block_id=block_id,
                                                              project_ids=access.project_ids)).data)

    @extend_schema(parameters=[TENANT_PARAM], responses={204: None},
                   summary="Unblock: the end user's requests are served again")
    def delete(self, request, block_id: int):
        access = self.access(request, projects=True)
        block = end_users.end_user_block_get(tenant=access.tenant, block_id=block_id, project_ids=access.project_ids)
        if block.project is None:
            access.require(Role.ADMIN, doing="unblocking end users")
        else:
            access.require_in_project(block.project, Role.ADMIN, doing="unblocking end users")
        end_users.end_user_unblock(block=block, actor=access.principal)
        return Response(status=204)
