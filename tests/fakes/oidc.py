"""Fake OpenID Connect issuer: discovery, JWKS, the authorization-code flow with PKCE, userinfo.

Serves ``GET /.well-known/openid-configuration`` (issuer = ``http://127.0.0.1:PORT``), ``GET /jwks``
(one RSA key generated at start, ``kid`` "fake-key-1"), ``GET /authorize`` (answers at once with
``302`` to ``redirect_uri?code=…&state=…`` for the identity in ``claims``, remembering the
``nonce``, ``redirect_uri`` and ``code_challenge``; ``authorize_error`` set makes it redirect back with
``error=…`` instead), ``POST /token`` (an ``application/x-www-form-urlencoded`` body; the client
authenticates with ``client_secret_post`` or ``client_secret_basic``; the code is single-use and
must come with the same ``redirect_uri`` and a ``code_verifier`` matching the S256 challenge;
answers ``{"access_token", "token_type": "Bearer", "expires_in", "id_token"}``) and
``GET /userinfo`` (``Authorization: Bearer <access token>``; the identity's claims). Errors are
RFC 6749 ``{"error", "error_description"}``.

The ID token is an RS256 JWT with ``iss``, ``sub``, ``aud`` (the client id), ``iat``, ``exp``
(+300 s), ``nonce`` and the identity's claims. ``id_token_fault`` spoils the next ones on purpose:
``bad_signature`` (signed by another key with the same ``kid``), ``wrong_audience``, ``expired``
(``exp`` ten minutes ago), ``wrong_nonce``, ``wrong_issuer``, ``hs256`` (signed with the client
secret, HS256).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .base import Call, FakeServer, Reply

KID = "fake-key-1"
ID_TOKEN_FAULTS = frozenset({"bad_signature", "wrong_audience", "expired", "wrong_nonce", "wrong_issuer", "hs256"})


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeOIDC(FakeServer):
    protocol = "oidc"
    json_bodies = False
    routes: ClassVar[dict[tuple[str, str], str]] = {
        ("GET", "/.well-known/openid-configuration"): "discovery",
        ("GET", "/jwks"): "jwks",
        ("GET", "/authorize"): "authorize",
        ("POST", "/token"): "token",
        ("GET", "/userinfo"): "userinfo",
    }

    def __init__(self, *, client_id: str = "tollgate", client_secret: str = "s3cret-client",
                 claims: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """claims: the identity the next sign-ins are for (``sub`` and ``email`` at least)."""
        super().__init__(**kwargs)
        self.client_id = client_id
        self.client_secret = client_secret
        self.claims: dict[str, Any] = dict(claims or {"sub": "user-1", "email": "ann@acme.com",
                                                      "email_verified": True})
        self.id_token_fault: str | None = None
        self.authorize_error: str | None = None  # when set, /authorize redirects back with this error
        self.key = _rsa_key()
        self._codes: dict[str, dict[str, Any]] = {}
        self._access: dict[str, dict[str, Any]] = {}
        self.issued_tokens: list[str] = []  # every ID and access token handed out (to look for leaks)

    @property
    def issuer(self) -> str:
        return self.url

    def _oauth_error(self, status: int, error: str, description: str) -> Reply:
        return Reply(status=status, body={"error": error, "error_description": description})

    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        """FakeServer's hook (unknown routes, ``status`` faults): an RFC 6749 error body."""
        return self._oauth_error(status, variant or "server_error", message or "The issuer failed")

    # ----------------------------------------------------------------- routes
    def route_discovery(self, call: Call) -> Reply:
        base = self.issuer
        return Reply(body={
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile", "groups"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
        })

    def route_jwks(self, call: Call) -> Reply:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return Reply(body={"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]})

    def route_authorize(self, call: Call) -> Reply:
        q = call.req.query
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") != self.client_id or not redirect_uri:
            return self._oauth_error(400, "invalid_request", "unknown client_id or no redirect_uri")
        if q.get("response_type") != "code" or "openid" not in q.get("scope", "").split():
            return self._oauth_error(400, "invalid_request", "response_type=code and scope openid are required")
        if self.authorize_error:
            back = {"error": self.authorize_error, "error_description": "The user denied access",
                    "state": q.get("state", "")}
            return Reply(status=302, headers={"location": f"{redirect_uri}?{urlencode(back)}"}, body={})
        code = secrets.token_urlsafe(16)
        self._codes[code] = {
            "redirect_uri": redirect_uri, "nonce": q.get("nonce"), "claims": dict(self.claims),
            "challenge": q.get("code_challenge"), "method": q.get("code_challenge_method"),
        }
        back = urlencode({"code": code, "state": q.get("state", "")})
        return Reply(status=302, headers={"location": f"{redirect_uri}?{back}"}, body={})

    def route_token(self, call: Call) -> Reply:
        form = dict(parse_qsl(call.req.raw.decode(), keep_blank_values=True))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = call.req.headers.get("authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != self.client_id or secret != self.client_secret:
            return self._oauth_error(401, "invalid_client", "Client authentication failed")
        grant = self._codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or grant is None:
            return self._oauth_error(400, "invalid_grant", "Unknown, used or expired code")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return self._oauth_error(400, "invalid_grant", "redirect_uri does not match")
        if grant["challenge"]:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if grant["method"] != "S256" or digest != grant["challenge"]:
                return self._oauth_error(400, "invalid_grant", "PKCE verification failed")
        access = secrets.token_urlsafe(24)
        self._access[access] = grant["claims"]
        id_token = self.id_token(grant["claims"], nonce=grant["nonce"])
        self.issued_tokens += [access, id_token]
        return Reply(body={"access_token": access, "token_type": "Bearer", "expires_in": 3600, "id_token": id_token})

    def route_userinfo(self, call: Call) -> Reply:
        auth = call.req.headers.get("authorization", "")
        claims = self._access.get(auth[7:]) if auth.startswith("Bearer ") else None
        if claims is None:
            return Reply(status=401, headers={"www-authenticate": 'Bearer error="invalid_token"'},
                         body={"error": "invalid_token", "error_description": "Unknown access token"})
        return Reply(body=claims)

    # ----------------------------------------------------------------- tokens
    def id_token(self, claims: dict[str, Any], *, nonce: str | None) -> str:
        now = int(time.time())
        payload = {**claims, "iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300}
        if nonce is not None:
            payload["nonce"] = nonce
        fault, key, alg = self.id_token_fault, self.key, "RS256"
        if fault == "wrong_audience":
            payload["aud"] = "someone-else"
        elif fault == "expired":
            payload["iat"], payload["exp"] = now - 900, now - 600
        elif fault == "wrong_nonce":
            payload["nonce"] = "not-the-nonce"
        elif fault == "wrong_issuer":
            payload["iss"] = "https://evil.example"
        elif fault == "bad_signature":
            key = _rsa_key()
        elif fault == "hs256":
            key, alg = self.client_secret, "HS256"
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": KID})
