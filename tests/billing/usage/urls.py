"""The project's URLs plus the usage API, so these tests run whether or not config/urls.py
includes billing.usage_urls yet (a second include of the same routes is harmless)."""

from django.urls import include, path

from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [*project_urlpatterns, path("api/", include("billing.usage_urls"))]
