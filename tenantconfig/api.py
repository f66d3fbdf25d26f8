"""The REST side of a tenant's configuration as one file, for the tenant's admins:
``GET /api/config`` (the document, YAML or JSON by Accept), ``POST /api/config/plan`` and
``POST /api/config/apply`` (a Tollgate document or a LiteLLM config.yaml, as YAML or JSON;
``?prune=true``), and ``GET /api/config/schema`` (the document's JSON Schema).

Over REST a document's ``env:NAME`` (and LiteLLM's ``os.environ/NAME``) is refused: the server's
environment is the platform's, not a tenant's to read into a key sent to a URL of its choosing;
keys are sent as values (or left out to keep the saved ones)."""

import yaml
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.drf import error_response
from tenantconfig.document import config_export, document_yaml
from tenantconfig.litellm import litellm_translate
from tenantconfig.parsing import document_load, is_litellm
from tenantconfig.schema import SCHEMA, ConfigInvalid
from tenantconfig.services import config_apply, document_tenant_check
from tenants.drf import TENANT_PARAM, TenantAPIView
from tenants.models import Role

PRUNE_PARAM = OpenApiParameter("prune", bool, description="Also delete the providers, aliases and budgets the "
                               "document does not name.", required=False)
BODY_HELP = ("A Tollgate configuration document (GET /api/config/schema) or a LiteLLM config.yaml (told apart by "
             "its model_list / router_settings / general_settings), as JSON (Content-Type: application/json) or "
             "YAML (application/yaml). At most 1 MiB.")

CHANGES_OUT = inline_serializer("ConfigChange", many=True, fields={
    "action": serializers.CharField(help_text="create, change or delete"),
    "kind": serializers.CharField(help_text="settings, provider, model, platform_model, alias, budget or key"),
    "name": serializers.CharField(),
    "fields": serializers.DictField(help_text="field -> {before, after}; secrets appear as (set) / (new value).")})
PLAN_OUT = inline_serializer("ConfigPlan", {
    "tenant": serializers.CharField(),
    "applied": serializers.BooleanField(help_text="False for a plan (nothing was changed)."),
    "summary": inline_serializer("ConfigPlanSummary", {"create": serializers.IntegerField(),
                                                       "change": serializers.IntegerField(),
                                                       "delete": serializers.IntegerField()}),
    "changes": CHANGES_OUT,
    "notes": serializers.ListField(child=serializers.CharField(),
                                   help_text="What a LiteLLM config held that was not imported."),
    "text": serializers.CharField(help_text="The plan as manage.py prints it."),
})


class YAMLRenderer(BaseRenderer):
    """The configuration document as YAML, as `manage.py tenant_config export` writes it."""

    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict) and "version" in data:
            return document_yaml(data).encode()
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()


def _invalid(exc: ConfigInvalid):
    fields: dict[str, list[str]] = {}
    for error in exc.errors:
        path, _, words = error.partition(": ")
        fields.setdefault(path, []).append(words)
    return error_response(exc.status, exc.type if exc.status == 413 else "invalid_config",
                          f"The document was not applied: {exc.message}", fields)


class ConfigAPI(TenantAPIView):
    renderer_classes = [JSONRenderer, YAMLRenderer]

    @extend_schema(
        parameters=[TENANT_PARAM],
        responses={200: OpenApiTypes.OBJECT},
        description="The document as JSON, or as YAML (application/yaml, as manage.py tenant_config export writes "
                    "it) with Accept: application/yaml or ?format=yaml. Keys appear as env:NAME references.",
        summary="The tenant's configuration as one document (YAML with Accept: application/yaml; no secrets)",
    )
    def get(self, request):
        access = self.access_for_change(request, needed=Role.ADMIN, doing="reading the configuration document")
        return Response(config_export(tenant=access.tenant))


class _ConfigWrite(TenantAPIView):
    dry_run = True

    def post(self, request):
        doing = "planning configuration changes" if self.dry_run else "applying a configuration document"
        access = self.access_for_change(request, needed=Role.ADMIN, doing=doing)
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        try:
            document = document_load(request.body, json=content_type == "application/json")
            notes = None
            if is_litellm(document):
                document, notes = litellm_translate(document, allow_env=False)
            document_tenant_check(tenant=access.tenant, document=document)
            plan = config_apply(tenant=access.tenant, document=document, actor=access.principal,
                                prune=request.query_params.get("prune") in ("true", "1", "yes"),
                                dry_run=self.dry_run, allow_env=False, notes=notes)
        except ConfigInvalid as exc:
            return _invalid(exc)
        return Response(plan.as_dict())


REQUEST = {"application/json": OpenApiTypes.OBJECT}
EXAMPLE = OpenApiExample("A setting and an alias", value={
    "version": 1, "settings": {"temperature": 0.3},
    "aliases": [{"name": "smart", "deployments": [{"model": "openai:gpt-4o"}]}]}, request_only=True)


class ConfigPlanAPI(_ConfigWrite):
    dry_run = True

    @extend_schema(parameters=[TENANT_PARAM, PRUNE_PARAM], request=REQUEST, responses=PLAN_OUT, examples=[EXAMPLE],
                   summary="What applying a document would change (nothing is changed)", description=BODY_HELP)
    def post(self, request):
        return super().post(request)


class ConfigApplyAPI(_ConfigWrite):
    dry_run = False

    @extend_schema(parameters=[TENANT_PARAM, PRUNE_PARAM], request=REQUEST, responses=PLAN_OUT, examples=[EXAMPLE],
                   summary="Make the tenant match a document, in one transaction (audited)", description=BODY_HELP)
    def post(self, request):
        return super().post(request)


class ConfigSchemaAPI(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT},
                   summary="The JSON Schema (draft 2020-12) of the configuration document")
    def get(self, request):
        return Response(SCHEMA)
