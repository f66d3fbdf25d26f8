"""``POST /api/test/llm``, the management API's one door into the data plane: its DRF edge
(the call itself is ``gateway.testcall``). Routed from config/urls.py, so the
providers API and the console never import the data plane."""

import orjson
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.drf import StrictCharField, StrictSerializer, validated
from core.schema import UPSTREAM_ERROR
from gateway.context import new_request_id
from gateway.errors import GatewayError
from gateway.testcall import llm_test_sync
from providers.selectors import provider_default_model
from tenants.drf import TENANT_PARAM, TenantAPIView
from tenants.models import Role


class LlmTestIn(StrictSerializer):
    model = StrictCharField(required=False, allow_null=True, max_length=400)
    provider = StrictCharField(
        required=False, allow_null=True, max_length=64,
        help_text="Try this provider (the tenant's provider of that name, else of that type: openai, anthropic, …) "
                  "with its default model: the tenant's default when it is that provider's, else its first chat "
                  "model the tenant may use; or with 'model', that model of it.")
    prompt = StrictCharField(max_length=4000)


class LlmTestOut(serializers.Serializer):
    request_id = serializers.CharField()
    answer = serializers.CharField()
    provider = serializers.CharField()
    model = serializers.CharField()
    latency_ms = serializers.FloatField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=20, decimal_places=12, allow_null=True,
                                    help_text="USD, as a string; null when the model's price is unknown.")
    attempts = serializers.ListField(child=serializers.DictField())


class LlmTestAPI(TenantAPIView):
    @extend_schema(parameters=[TENANT_PARAM], request=LlmTestIn,
                   responses={200: LlmTestOut, 502: UPSTREAM_ERROR, 503: UPSTREAM_ERROR,
                              504: UPSTREAM_ERROR},
                   summary="Send one short prompt through the tenant's routing and see what answered")
    def post(self, request):
        access = self.access_for_change(request, needed=Role.ADMIN, doing="test calls")
        data = validated(LlmTestIn, request.data)
        model = data.get("model")
        if data.get("provider"):
            model = provider_default_model(tenant=access.tenant, name=data["provider"], model=model)
        request_id = new_request_id()
        try:
            answer = llm_test_sync(tenant_id=access.tenant.pk, api_key=access.principal.api_key,
                                   model=model, prompt=data["prompt"], request_id=request_id)
        except GatewayError as exc:
            return Response(orjson.loads(exc.body()), status=exc.status, headers={"x-request-id": request_id})
        return Response(LlmTestOut(answer).data, headers={"x-request-id": request_id})
