"""The authentication backend of the SSO callback: mozilla-django-oidc's code flow, with the
endpoints taken from the issuer's discovery document (sso/discovery.py) and a stricter ID-token
check (RS256 against the issuer's JWKS; iss, aud, exp and iat required and checked). The user
and their roles come from sso_user_sync. Tokens are never logged nor kept in the session."""

import logging

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from core.errors import TollgateError
from sso.discovery import endpoints
from sso.services import sso_user_sync

log = logging.getLogger("tollgate.sso")

CLOCK_SKEW_SECONDS = 60

_TOKEN_ERRORS = (
    (jwt.ExpiredSignatureError, "The identity provider's ID token has expired; sign in again."),
    (jwt.InvalidAudienceError, "The ID token was issued to another client, not to this Tollgate."),
    (jwt.InvalidIssuerError, "The ID token was issued by another issuer than OIDC_ISSUER."),
    (jwt.ImmatureSignatureError, "The ID token is not valid yet (check the clocks)."),
    (jwt.MissingRequiredClaimError, "The ID token lacks a required claim (iss, aud, sub, exp, iat)."),
    (jwt.InvalidSignatureError, "The ID token's signature does not verify with the issuer's keys."),
    (jwt.InvalidTokenError, "The ID token could not be verified."),
)


class SSOBackend(OIDCAuthenticationBackend):
    """Acts only when called from the SSO callback (with a nonce) and SSO is configured;
    password logins pass it by."""

    def __init__(self, *args, **kwargs):  # no network here: every authenticate() builds backends
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = "RS256"
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.UserModel = get_user_model()

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:  # noqa: N802 - the library's attribute names
        return endpoints().token

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:  # noqa: N802
        return endpoints().userinfo

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:  # noqa: N802
        return endpoints().jwks

    def authenticate(self, request, **kwargs):
        if not settings.OIDC_ENABLED or request is None or "nonce" not in kwargs or "username" in kwargs:
            return None
        if not kwargs.get("nonce"):
            request.sso_refusal = "The sign-in carried no nonce; start again."
            return None
        try:
            return super().authenticate(request, **kwargs)
        except TollgateError as exc:  # SSORefused, DiscoveryError, an email Tollgate cannot take
            request.sso_refusal = exc.message
        except SuspiciousOperation as exc:  # nonce, alg, kid or sub mismatches
            request.sso_refusal = f"The sign-in could not be verified: {exc}"
        except jwt.InvalidTokenError as exc:
            request.sso_refusal = next(text for kind, text in _TOKEN_ERRORS if isinstance(exc, kind))
        except requests.RequestException as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            request.sso_refusal = (
                f"The identity provider answered {status}; try again." if status
                else "The identity provider could not be reached; try again."
            )
        log.warning("SSO login refused: %s", request.sso_refusal)
        return None

    # Django's: a user made inactive loses their session on the next request (the library's
    # get_user would keep serving them).
    get_user = ModelBackend.get_user

    def _verify_jws(self, payload, key):
        """The ID token's claims once its RS256 signature, issuer, audience and times check."""
        header = jwt.get_unverified_header(payload)
        if header.get("alg") != "RS256":
            raise SuspiciousOperation(f"the ID token is signed with {header.get('alg')!r}, not RS256")
        return jwt.decode(
            payload,
            key,
            algorithms=["RS256"],
            audience=self.OIDC_RP_CLIENT_ID,
            issuer=settings.OIDC_ISSUER,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["iss", "aud", "sub", "exp", "iat"]},
        )

    def get_payload_data(self, token, key):
        return self._verify_jws(token, key)  # never an unsigned token, whatever the settings

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims, completed by the userinfo endpoint's (same subject only)."""
        claims = dict(payload)
        if self.OIDC_OP_USER_ENDPOINT:
            info = super().get_userinfo(access_token, id_token, payload)
            if str(info.get("sub")) != str(payload.get("sub")):
                raise SuspiciousOperation("the userinfo subject differs from the ID token's")
            claims.update(info)
        return claims

    def get_or_create_user(self, access_token, id_token, payload):
        return sso_user_sync(claims=self.get_userinfo(access_token, id_token, payload))
