"""Bearer-key authentication for the management API (DRF). Kept apart from the views so
DRF can import it while it is still loading (no rest_framework.views import here)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from tenants import selectors, services
from tenants.access import Principal
from tenants.models import ApiKey, KeyScope

# --- authentication ------------------------------------------------------------------------


class KeyUser:
    """The ``request.user`` of a request authenticated by an API key (not a Django user)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, key: ApiKey):
        self.key = key

    def get_username(self) -> str:
        return f"key:{self.key.masked}"

    def has_perm(self, perm, obj=None) -> bool:
        return False

    def __str__(self) -> str:
        return self.get_username()


class BearerKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer tg_…``. Without the header, the next class (session) runs."""

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != b"bearer":
            return None  # Basic etc.: not ours
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: send 'Authorization: Bearer <key>'."
            )
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key: it contains non-ASCII bytes.") from None
        try:
            key = selectors.api_key_authenticate(raw=raw)
        except selectors.KeyRejected as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        key.last_used_at = services.api_key_touch(key_id=key.pk, tenant_id=key.tenant_id) or key.last_used_at
        return KeyUser(key), key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="tollgate"'


def principal_of(request) -> Principal:
    if isinstance(request.auth, ApiKey):
        return Principal(api_key=request.auth)
    return Principal(user=request.user)


class IsManagementPrincipal(BasePermission):
    """A logged-in user, or an admin-scope key. Chat keys belong on /v1."""

    message = "Authentication required."

    def has_permission(self, request, view) -> bool:
        key = request.auth if isinstance(request.auth, ApiKey) else None
        if key is not None and key.scope != KeyScope.ADMIN:
            self.message = (
                f"API key {key.masked} has scope 'chat': it works on /v1 only. The management "
                "API needs an admin-scope key or a logged-in session."
            )
            return False
        return bool(request.user and request.user.is_authenticated)


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.auth.BearerKeyAuthentication"
    name = "bearerKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An admin-scope tenant key (tg_…).",
        }
