"""The base view of every tenant-scoped management API view (``TenantAPIView``): it resolves
the caller's tenant and role and pages lists. The generic DRF parts (strict fields, pagination,
the error shape) are ``core.drf``."""

from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions
from rest_framework.views import APIView

from core.drf import Page
from tenants import selectors
from tenants.access import TenantAccess
from tenants.auth import principal_of
from tenants.models import Role

# The ``tenant`` query parameter that ``TenantAPIView.access`` reads, for the views' schemas.
TENANT_PARAM = OpenApiParameter(
    "tenant",
    str,
    description="Tenant id or slug, for a logged-in user who belongs to several tenants "
    "(or support staff). Also accepted as the X-Tollgate-Tenant header.",
    required=False,
)


class TenantAPIView(APIView):
    """Resolves ``request``'s tenant and role; subclasses call ``self.access(...)``. Lists
    answer one page (``paged``); the schema declares that envelope for every response
    declared as ``Serializer(many=True)``."""

    pagination_class = Page

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # PostgreSQL refuses NUL in any text it is sent; no id, slug, filter or search has one.
        given = [*request.query_params.lists()]
        given += [(name, [value]) for name, value in kwargs.items() if isinstance(value, str)]
        bad = sorted({name for name, values in given if any("\x00" in value for value in values)})
        if bad:
            message = "Must not contain a NUL character (%00)."
            raise exceptions.ValidationError({name: [message] for name in bad})

    def access(self, request, *, tenant_id: int | None = None, projects: bool = False) -> TenantAccess:
        """``projects``: this view serves members with roles on some projects only (their access
        carries ``project_roles``, and the view must keep to those projects); other views refuse
        them."""
        hint = request.query_params.get("tenant") or request.headers.get("X-Tollgate-Tenant")
        return selectors.tenant_access_get(
            principal=principal_of(request), tenant_id=tenant_id, tenant_hint=hint, projects=projects
        )

    def access_for_change(self, request, *, needed: Role, doing: str, tenant_id: int | None = None):
        access = self.access(request, tenant_id=tenant_id)
        access.require(needed, doing=doing)
        return access
