"""OpenAPI description of the bearer-key scheme (drf-spectacular extension, loaded in
TenantsConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.auth.BearerKeyAuthentication"
    name = "bearerKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An admin-scope tenant key (tg_…)."}
