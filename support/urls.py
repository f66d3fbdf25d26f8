"""The support pages' routes, mounted at /support/ by config/web_urls.py."""

from django.urls import path

from support import views

urlpatterns = [
    path("", views.support_home, name="support-home"),
    path("providers/", views.support_providers, name="support-providers"),
]
