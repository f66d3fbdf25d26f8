"""The root URL configuration: health and metrics, the Django admin, the server-rendered pages
(config/web_urls.py), the OpenAPI schema and docs, and each app's /api/ routes, with a JSON 404
for any other /api/ path."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import healthz, metrics, readyz
from core.drf import api_not_found

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("config.web_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("tenants.urls")),
    path("api/", include("providers.urls")),
    path("api/", include("gateway.urls")),  # POST /api/test/llm
    path("api/", include("billing.urls")),
    path("api/", include("billing.usage_urls")),
    path("api/", include("billing.end_users_urls")),  # the top end users and end-user blocks
    path("api/", include("tenantconfig.urls")),  # a tenant's configuration as one file
    re_path(r"^api/", api_not_found),  # last: a JSON 404 for every other /api path
]
