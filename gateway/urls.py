from django.urls import path

from gateway import api

urlpatterns = [
    path("test/llm", api.LlmTestAPI.as_view(), name="api-test-llm"),
]
