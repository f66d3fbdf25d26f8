"""The one Django route of the gateway app: POST /api/test/llm (gateway/api.py), mounted at /api/
by config/urls.py; the /v1 data plane itself is ASGI (config/asgi.py), not a Django URL."""

from django.urls import path

from gateway import api

urlpatterns = [
    path("test/llm", api.LlmTestAPI.as_view(), name="api-test-llm"),
]
