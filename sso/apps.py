"""OpenID Connect login for the console and the admin (mozilla-django-oidc; README "Single
sign-on"). Its one model links an issuer's subject to a user; memberships and the support group
belong to their apps."""

from django.apps import AppConfig


class SsoConfig(AppConfig):
    name = "sso"
    default_auto_field = "django.db.models.BigAutoField"
