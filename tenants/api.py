"""Management REST API for tenants, members and API keys. Views parse, authorize, call a
service or selector, and render; nothing else happens here."""

import zoneinfo

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from core.drf import (
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictSerializer,
    paged,
    validated,
)
from core.errors import Forbidden, InvalidInput
from tenants import selectors, services
from tenants.access import PROJECT, SUPPORT
from tenants.auth import principal_of
from tenants.drf import TENANT_PARAM, TenantAPIView
from tenants.models import (
    PROJECT_ROLE_CHOICES,
    ApiKey,
    AuditEvent,
    KeyScope,
    Membership,
    OutagePolicy,
    Project,
    ProjectMembership,
    Role,
    Tenant,
)

# --- tenants -------------------------------------------------------------------------------


def camel_merged(data: dict, pairs: dict[str, str], *, where: str) -> dict:
    """``data`` with each camelCase key (the seed's dialect: maxTokens) folded into its snake_case
    twin (max_tokens); both sent with different values is an error naming both."""
    out = dict(data)
    for camel, snake in pairs.items():
        if camel not in out:
            continue
        value = out.pop(camel)
        if snake in out and out[snake] != value:
            raise serializers.ValidationError({camel: [
                f"{where}.{camel} ({value}) and {where}.{snake} ({out[snake]}) are the same setting with "
                "different values; send one of them."]})
        out[snake] = value
    return out


class LlmSettingsIn(StrictSerializer):
    model = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=255)
    temperature = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=2)
    max_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000)
    top_p = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=1)
    maxTokens = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000,  # noqa: N815
                                   help_text="The seed's spelling of max_tokens (send one of them).")
    topP = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=1,  # noqa: N815
                            help_text="The seed's spelling of top_p (send one of them).")

    def validate(self, data):
        return camel_merged(data, {"maxTokens": "max_tokens", "topP": "top_p"}, where="settings.llm")


class EmbeddingsSettingsIn(StrictSerializer):
    model = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=255,
                            help_text="What /v1/embeddings uses when a request names no model.")


class LimitsIn(StrictSerializer):
    requests_per_minute = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=10_000_000
    )
    tokens_per_minute = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=10**12,
        help_text="Input and output tokens per minute, across the tenant; null: unlimited.",
    )
    tokens_per_day = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=10**15
    )
    redis_outage = serializers.ChoiceField(
        required=False, choices=OutagePolicy.choices,
        help_text="While Redis (the rate-limit and budget store) is unreachable: 'closed' refuses /v1 requests "
        "(503), 'open' serves them without rate limits (never for a tenant with a block budget), 'inherit' "
        "follows the platform's GATEWAY_REDIS_OUTAGE.",
    )


class CacheIn(StrictSerializer):
    enabled = StrictBooleanField(required=False)
    ttl_seconds = StrictIntegerField(required=False, min_value=1, max_value=30 * 86400)


class DataIn(StrictSerializer):
    usage_retention_days = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=3650)


class SettingsIn(StrictSerializer):
    llm = LlmSettingsIn(required=False)
    embeddings = EmbeddingsSettingsIn(required=False)
    limits = LimitsIn(required=False)
    cache = CacheIn(required=False)
    data = DataIn(required=False)


class TenantIn(StrictSerializer):
    name = StrictCharField(required=False, max_length=200)
    timezone = StrictCharField(required=False, max_length=64)
    settings = SettingsIn(required=False)

    def validate_timezone(self, value: str) -> str:
        if value not in zoneinfo.available_timezones():
            raise serializers.ValidationError(
                f"Unknown time zone '{value}'; use an IANA name such as 'Europe/Berlin' or 'UTC'."
            )
        return value


# settings path -> Tenant field
_SETTING_FIELDS = {
    ("llm", "model"): "default_model",
    ("llm", "temperature"): "temperature",
    ("llm", "max_tokens"): "max_tokens",
    ("llm", "top_p"): "top_p",
    ("embeddings", "model"): "default_embedding_model",
    ("limits", "requests_per_minute"): "requests_per_minute",
    ("limits", "tokens_per_minute"): "tokens_per_minute",
    ("limits", "tokens_per_day"): "tokens_per_day",
    ("limits", "redis_outage"): "redis_outage",
    ("cache", "enabled"): "cache_enabled",
    ("cache", "ttl_seconds"): "cache_ttl_seconds",
    ("data", "usage_retention_days"): "usage_retention_days",
}


def tenant_changes(data: dict) -> dict:
    changes = {k: data[k] for k in ("name", "timezone") if k in data}
    for (section, key), field in _SETTING_FIELDS.items():
        if key in data.get("settings", {}).get(section, {}):
            changes[field] = data["settings"][section][key]
    for field in ("default_model", "default_embedding_model"):
        if field in changes:
            changes[field] = (changes[field] or "").strip()
    return changes


class LlmSettingsOut(serializers.Serializer):
    model = serializers.CharField(source="default_model", allow_null=True)
    temperature = serializers.FloatField(allow_null=True)
    max_tokens = serializers.IntegerField(allow_null=True)
    top_p = serializers.FloatField(allow_null=True)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["model"] = data["model"] or None
        return data


class EmbeddingsSettingsOut(serializers.Serializer):
    model = serializers.CharField(source="default_embedding_model", allow_null=True)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["model"] = data["model"] or None
        return data


class LimitsOut(serializers.Serializer):
    requests_per_minute = serializers.IntegerField(allow_null=True)
    tokens_per_minute = serializers.IntegerField(allow_null=True)
    tokens_per_day = serializers.IntegerField(allow_null=True)
    redis_outage = serializers.ChoiceField(choices=OutagePolicy.choices)


class CacheOut(serializers.Serializer):
    enabled = serializers.BooleanField(source="cache_enabled")
    ttl_seconds = serializers.IntegerField(source="cache_ttl_seconds")


class DataOut(serializers.Serializer):
    usage_retention_days = serializers.IntegerField(allow_null=True,
                                                    help_text="Null: the platform default (USAGE_RETENTION_DAYS).")


class SettingsOut(serializers.Serializer):
    llm = LlmSettingsOut(source="*")
    embeddings = EmbeddingsSettingsOut(source="*")
    limits = LimitsOut(source="*")
    cache = CacheOut(source="*")
    data = DataOut(source="*")


class TenantProjectRoleOut(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=PROJECT_ROLE_CHOICES)


class TenantOut(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active")
    settings = SettingsOut(source="*", allow_null=True,
                           help_text="Null for a caller with a role on some projects only (settings are tenant-wide).")
    role = serializers.SerializerMethodField(
        help_text="The caller's role in this tenant: owner, admin, viewer, support, or 'project' for a role on some "
                  "of its projects only (listed in project_roles).")
    project_roles = serializers.SerializerMethodField(
        help_text="The caller's roles on some projects only (their role is 'project'); empty for a tenant role, "
                  "which covers every project.")

    class Meta:
        model = Tenant
        fields = ["id", "slug", "name", "active", "timezone", "settings", "role", "project_roles", "created_at",
                  "updated_at"]

    def get_role(self, tenant) -> str | None:
        roles = self.context.get("roles", {})
        return roles.get(tenant.pk)

    @extend_schema_field(TenantProjectRoleOut(many=True))
    def get_project_roles(self, tenant) -> list[dict]:
        return self.context.get("project_roles", {}).get(tenant.pk, [])

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data["role"] == PROJECT:
            data["settings"] = None
        return data


class TenantListAPI(TenantAPIView):
    @extend_schema(responses=TenantOut(many=True),
                   summary="Tenants the caller can open (a role in the tenant or on some of its projects)")
    def get(self, request):
        principal = principal_of(request)
        tenants = selectors.tenants_visible(principal=principal, projects=True).order_by("slug")
        roles: dict[int, str] = {}
        project_roles: dict[int, list[dict]] = {}
        if principal.api_key is not None:
            roles = {principal.api_key.tenant_id: Role.ADMIN.value}
        elif principal.user is not None:
            roles = dict(
                Membership.objects.filter(user=principal.user).values_list("tenant_id", "role")
            )
            if principal.is_support:
                roles = {t: roles.get(t, SUPPORT) for t in tenants.values_list("pk", flat=True)}
            for membership in selectors.project_memberships_of(user=principal.user):
                if membership.project.tenant_id not in roles:
                    project_roles.setdefault(membership.project.tenant_id, []).append({
                        "id": membership.project_id, "slug": membership.project.slug,
                        "name": membership.project.name, "role": membership.role})
            roles.update(dict.fromkeys(project_roles, PROJECT))
        return paged(self, request, tenants, TenantOut, roles=roles, project_roles=project_roles)


# --- API keys ------------------------------------------------------------------------------


@extend_schema_field({"oneOf": [{"type": "integer", "minimum": 1},
                                {"type": "string", "minLength": 1, "maxLength": 50}]})
class ProjectRefField(serializers.Field):
    """A project named by id (an integer) or slug (a string)."""

    default_error_messages = {
        "invalid": "Expected a project id (an integer) or slug (a string); GET /api/projects lists them.",
    }

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int) and 0 < data < 2**63:
            return data
        if isinstance(data, str) and data.strip() and len(data) <= 50 and "\x00" not in data:
            return data.strip()
        self.fail("invalid")

    def to_representation(self, value):
        return value


class ApiKeyIn(StrictSerializer):
    name = StrictCharField(max_length=100)
    scope = serializers.ChoiceField(choices=KeyScope.choices, default=KeyScope.CHAT)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    project = ProjectRefField(required=False, help_text="Project id or slug; default: the tenant's default "
                              "project (a project admin: their project, when they have one).")


class ApiKeyProjectOut(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()


class ApiKeyLimitsOut(serializers.Serializer):
    requests_per_minute = serializers.IntegerField(allow_null=True)
    tokens_per_minute = serializers.IntegerField(allow_null=True)
    tokens_per_day = serializers.IntegerField(allow_null=True)


class ApiKeyLimitsIn(StrictSerializer):
    requests_per_minute = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000)
    tokens_per_minute = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10**12)
    tokens_per_day = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10**15)


class ApiKeyUpdateIn(StrictSerializer):
    limits = ApiKeyLimitsIn(help_text="The key's own limits; null: unlimited (its project's and the tenant's "
                                      "still apply). Limits left out keep their value.")


class ApiKeyOut(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    created_by = serializers.SerializerMethodField()
    project = ApiKeyProjectOut(help_text="The project the key belongs to.")
    limits = ApiKeyLimitsOut(source="*", help_text="The key's own limits (null: unlimited).")

    class Meta:
        model = ApiKey
        fields = [
            "id", "name", "scope", "project", "prefix", "status", "created_at", "created_by",
            "expires_at", "revoked_at", "last_used_at", "limits",
        ]

    def get_created_by(self, key) -> str | None:
        return key.created_by.get_username() if key.created_by else None


class ApiKeyCreatedOut(ApiKeyOut):
    key = serializers.SerializerMethodField(
        help_text="The full key. It is shown only in this response; store it now."
    )

    class Meta(ApiKeyOut.Meta):
        fields = [*ApiKeyOut.Meta.fields, "key"]

    def get_key(self, key) -> str:
        return self.context["raw"]


PROJECT_PARAM = OpenApiParameter("project", str, required=False,
                                 description="Only this project's (id or slug).")


def _key_project(access, wanted) -> Project:
    """The project a new key goes to: ``wanted`` (id or slug) if given, else the default project;
    a caller with roles on some projects only must have exactly one it administers, or name one."""
    if wanted is not None:
        return selectors.project_get(tenant=access.tenant, project=wanted, project_ids=access.project_ids)
    if access.project_roles is None:
        return selectors.project_default(tenant=access.tenant)
    administered = sorted(p for p, role in access.project_roles.items() if role == Role.ADMIN)
    if len(administered) == 1:
        return selectors.project_get(tenant=access.tenant, project=administered[0])
    raise InvalidInput("Name the key's project (\"project\": id or slug): you do not administer exactly one "
                       "project.", field="project")


class ApiKeyListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM, PROJECT_PARAM], responses=ApiKeyOut(many=True),
                   summary="List keys (a project member: their projects' keys)")
    def get(self, request):
        access = self.access(request, projects=True)
        keys = selectors.api_key_list(tenant=access.tenant, project_ids=access.project_ids)
        wanted = request.query_params.get("project")
        if wanted:
            project = selectors.project_get(tenant=access.tenant, project=wanted, project_ids=access.project_ids)
            keys = keys.filter(project=project)
        return paged(self, request, keys, ApiKeyOut)

    @extend_schema(
        parameters=[TENANT_PARAM], request=ApiKeyIn, responses={201: ApiKeyCreatedOut},
        summary="Create a key (the full key is in this response only)",
    )
    def post(self, request):
        access = self.access(request, projects=True)
        data = validated(ApiKeyIn, request.data)
        project = _key_project(access, data.get("project"))
        access.require_in_project(project, Role.ADMIN, doing="creating API keys")
        if access.project_roles is not None and data["scope"] == KeyScope.ADMIN:
            raise Forbidden("A project admin creates chat-scope keys only: an admin-scope key acts as an admin "
                            f"of the whole tenant '{access.tenant.slug}'.")
        key, raw = services.api_key_create(
            tenant=access.tenant,
            name=data["name"],
            scope=data["scope"],
            expires_at=data.get("expires_at"),
            project=project,
            actor=access.principal,
        )
        return Response(ApiKeyCreatedOut(key, context={"raw": raw}).data, status=201)


class ApiKeyDetailAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=ApiKeyOut, summary="One key")
    def get(self, request, key_id: int):
        access = self.access(request, projects=True)
        key = selectors.api_key_get(tenant=access.tenant, key_id=key_id, project_ids=access.project_ids)
        return Response(ApiKeyOut(key).data)

    @extend_schema(parameters=[TENANT_PARAM], request=ApiKeyUpdateIn, responses=ApiKeyOut,
                   summary="Change a key's own limits (a project admin: of their projects' keys)")
    def patch(self, request, key_id: int):
        access = self.access(request, projects=True)
        key = selectors.api_key_get(tenant=access.tenant, key_id=key_id, project_ids=access.project_ids)
        access.require_in_project(key.project, Role.ADMIN, doing="changing API keys")
        data = validated(ApiKeyUpdateIn, request.data)
        services.api_key_limits_update(key=key, changes=dict(data["limits"]), actor=access.principal)
        key = selectors.api_key_get(tenant=access.tenant, key_id=key_id)
        return Response(ApiKeyOut(key).data)

    @extend_schema(
        parameters=[TENANT_PARAM], responses={200: ApiKeyOut},
        summary="Revoke a key (it stops working at once; revoking twice is harmless)",
    )
    def delete(self, request, key_id: int):
        access = self.access(request, projects=True)
        key = selectors.api_key_get(tenant=access.tenant, key_id=key_id, project_ids=access.project_ids)
        access.require_in_project(key.project, Role.ADMIN, doing="revoking API keys")
        key = services.api_key_revoke(key=key, actor=access.principal)
        return Response(ApiKeyOut(key).data)


# --- projects ------------------------------------------------------------------------------


class ProjectLimitsIn(StrictSerializer):
    requests_per_minute = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000)
    tokens_per_minute = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10**12)
    tokens_per_day = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10**15)


class ProjectUpdateIn(StrictSerializer):
    name = StrictCharField(required=False, max_length=200)
    default_model = StrictCharField(
        required=False, allow_null=True, allow_blank=True, max_length=255,
        help_text="What a request of the project's keys without `model` uses (empty: the tenant's default): a "
                  "tenant-wide alias, one of the project's aliases, or a model the tenant may use.")
    limits = ProjectLimitsIn(required=False, help_text="The project's own limits, across its keys; null: "
                             "unlimited (the tenant's still apply).")


class ProjectIn(ProjectUpdateIn):
    slug = StrictCharField(max_length=50)
    name = StrictCharField(max_length=200)


def project_changes(data: dict) -> dict:
    changes = {k: data[k] for k in ("name", "default_model") if k in data}
    if "default_model" in changes:
        changes["default_model"] = changes["default_model"] or ""
    changes.update(data.get("limits", {}))
    return changes


class ProjectLimitsOut(serializers.Serializer):
    requests_per_minute = serializers.IntegerField(allow_null=True)
    tokens_per_minute = serializers.IntegerField(allow_null=True)
    tokens_per_day = serializers.IntegerField(allow_null=True)


class ProjectOut(serializers.ModelSerializer):
    default = serializers.BooleanField(source="is_default", help_text="The project keys go to by default.")
    default_model = serializers.SerializerMethodField()
    limits = ProjectLimitsOut(source="*", help_text="The project's own limits, across its keys.")
    role = serializers.SerializerMethodField(help_text="The caller's role on this project.")

    class Meta:
        model = Project
        fields = ["id", "slug", "name", "default", "default_model", "limits", "role", "created_at", "updated_at"]

    def get_default_model(self, project) -> str | None:
        return project.default_model or None

    def get_role(self, project) -> str | None:
        access = self.context.get("access")
        if access is None:
            return None
        if access.project_roles is None:
            return access.role
        return access.project_roles.get(project.pk)


class ProjectListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=ProjectOut(many=True),
                   summary="List projects (a project member: their projects)")
    def get(self, request):
        access = self.access(request, projects=True)
        projects = selectors.project_list(tenant=access.tenant, project_ids=access.project_ids)
        return paged(self, request, projects, ProjectOut, access=access)

    @extend_schema(parameters=[TENANT_PARAM], request=ProjectIn, responses={201: ProjectOut},
                   summary="Create a project (tenant admins)")
    def post(self, request):
        access = self.access_for_change(request, needed=Role.ADMIN, doing="creating projects")
        data = validated(ProjectIn, request.data)
        changes = project_changes(data)
        project = services.project_create(tenant=access.tenant, slug=data["slug"], name=changes.pop("name"),
                                          actor=access.principal, **changes)
        return Response(ProjectOut(project, context={"access": access}).data, status=201)


class ProjectDetailAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=ProjectOut, summary="One project (by id or slug)")
    def get(self, request, project: str):
        access = self.access(request, projects=True)
        found = selectors.project_get(tenant=access.tenant, project=project, project_ids=access.project_ids)
        return Response(ProjectOut(found, context={"access": access}).data)

    @extend_schema(parameters=[TENANT_PARAM], request=ProjectUpdateIn, responses=ProjectOut,
                   summary="Change a project's name, default model or limits (tenant admins)")
    def patch(self, request, project: str):
        access = self.access_for_change(request, needed=Role.ADMIN, doing="changing projects")
        found = selectors.project_get(tenant=access.tenant, project=project)
        data = validated(ProjectUpdateIn, request.data)
        found = services.project_update(project=found, changes=project_changes(data), actor=access.principal)
        return Response(ProjectOut(found, context={"access": access}).data)

    put = patch

    @extend_schema(parameters=[TENANT_PARAM], responses={204: None},
                   summary="Delete a project (tenant admins; refused while it has active keys)")
    def delete(self, request, project: str):
        access = self.access_for_change(request, needed=Role.ADMIN, doing="deleting projects")
        found = selectors.project_get(tenant=access.tenant, project=project)
        services.project_delete(project=found, actor=access.principal)
        return Response(status=204)


class ProjectMemberIn(StrictSerializer):
    email = StrictCharField(max_length=254)
    role = serializers.ChoiceField(choices=PROJECT_ROLE_CHOICES)


class ProjectMemberOut(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email")

    class Meta:
        model = ProjectMembership
        fields = ["id", "username", "email", "role", "source", "created_at"]


class ProjectMemberListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=ProjectMemberOut(many=True),
                   summary="Members with a role on this project only")
    def get(self, request, project: str):
        access = self.access(request, projects=True)
        found = selectors.project_get(tenant=access.tenant, project=project, project_ids=access.project_ids)
        return paged(self, request, selectors.project_membership_list(project=found), ProjectMemberOut)

    @extend_schema(parameters=[TENANT_PARAM], request=ProjectMemberIn, responses={201: ProjectMemberOut},
                   summary="Give an existing user a role on this project only (tenant owners)")
    def post(self, request, project: str):
        access = self.access_for_change(request, needed=Role.OWNER, doing="managing members")
        found = selectors.project_get(tenant=access.tenant, project=project)
        data = validated(ProjectMemberIn, request.data)
        membership = services.project_member_add(project=found, email=data["email"], role=data["role"],
                                                 actor=access.principal)
        return Response(ProjectMemberOut(membership).data, status=201)


class ProjectMemberRoleIn(StrictSerializer):
    role = serializers.ChoiceField(choices=PROJECT_ROLE_CHOICES)


class ProjectMemberDetailAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], request=ProjectMemberRoleIn, responses=ProjectMemberOut,
                   summary="Change a member's role on this project (tenant owners)")
    def put(self, request, project: str, project_member_id: int):
        access = self.access_for_change(request, needed=Role.OWNER, doing="managing members")
        found = selectors.project_get(tenant=access.tenant, project=project)
        membership = selectors.project_membership_get(project=found, membership_id=project_member_id)
        data = validated(ProjectMemberRoleIn, request.data)
        membership = services.project_member_set_role(membership=membership, role=data["role"],
                                                      actor=access.principal)
        return Response(ProjectMemberOut(membership).data)

    @extend_schema(parameters=[TENANT_PARAM], responses={204: None},
                   summary="Remove a member's role on this project (tenant owners)")
    def delete(self, request, project: str, project_member_id: int):
        access = self.access_for_change(request, needed=Role.OWNER, doing="managing members")
        found = selectors.project_get(tenant=access.tenant, project=project)
        membership = selectors.project_membership_get(project=found, membership_id=project_member_id)
        services.project_member_remove(membership=membership, actor=access.principal)
        return Response(status=204)


# --- members -------------------------------------------------------------------------------


class MemberIn(StrictSerializer):
    email = StrictCharField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberRoleIn(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class MemberOut(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email")

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "role", "source", "created_at"]


class MemberListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=MemberOut(many=True), summary="List members")
    def get(self, request):
        access = self.access(request)
        return paged(self, request, selectors.membership_list(tenant=access.tenant), MemberOut)

    @extend_schema(
        parameters=[TENANT_PARAM], request=MemberIn, responses={201: MemberOut},
        summary="Add an existing user as a member (owners only)",
    )
    def post(self, request):
        access = self.access_for_change(request, needed=Role.OWNER, doing="managing members")
        data = validated(MemberIn, request.data)
        membership = services.membership_add(
            tenant=access.tenant, email=data["email"], role=data["role"], actor=access.principal
        )
        return Response(MemberOut(membership).data, status=201)


class MemberDetailAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=MemberOut, summary="One member")
    def get(self, request, member_id: int):
        access = self.access(request)
        return Response(MemberOut(selectors.membership_get(tenant=access.tenant, membership_id=member_id)).data)

    @extend_schema(
        parameters=[TENANT_PARAM], request=MemberRoleIn, responses=MemberOut,
        summary="Change a member's role (owners only)",
    )
    def put(self, request, member_id: int):
        access = self.access_for_change(request, needed=Role.OWNER, doing="managing members")
        membership = selectors.membership_get(tenant=access.tenant, membership_id=member_id)
        data = validated(MemberRoleIn, request.data)
        membership = services.membership_set_role(
            membership=membership, role=data["role"], actor=access.principal
        )
        return Response(MemberOut(membership).data)

    @extend_schema(parameters=[TENANT_PARAM], responses={204: None}, summary="Remove a member (owners only)")
    def delete(self, request, member_id: int):
        access = self.access_for_change(request, needed=Role.OWNER, doing="managing members")
        membership = selectors.membership_get(tenant=access.tenant, membership_id=member_id)
        services.membership_remove(membership=membership, actor=access.principal)
        return Response(status=204)


# --- audit trail -----------------------------------------------------------------------------


class AuditEventOut(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor", "action", "target", "before", "after"]


class AuditListAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], responses=AuditEventOut(many=True),
                   summary="Configuration changes in this tenant, newest first (owners and support staff)")
    def get(self, request):
        access = self.access(request)
        if access.role not in (Role.OWNER, SUPPORT):
            raise Forbidden("The audit trail is visible to the tenant's owners and to support staff.")
        events = selectors.audit_event_list(tenant=access.tenant)
        action = request.query_params.get("action")
        if action:
            events = events.filter(action__startswith=action)
        return paged(self, request, events, AuditEventOut)
