"""Credentials that mint their own access tokens, the pure part: which providers have one, the
token request to send, the answer read back, and the per-process cache of tokens. Fetching lives
with the HTTP clients: the data plane's (gateway/tokens.py, aiohttp) and the catalog syncs'
(providers/tokens.py, httpx); both go through :data:`TOKENS`, so a process mints a provider's
token once, whichever side asks first.

- **Azure Entra ID client credentials** (an azure provider with ``options.auth = "entra-client"``):
  ``POST {authority}/{tenant_id}/oauth2/v2.0/token`` with ``grant_type=client_credentials``,
  ``client_id``, ``client_secret`` (the provider's key) and the Cognitive Services scope.
- **Google service-account JSON** (a gemini provider on Vertex AI whose key is a service
  account's JSON key): an RS256 JWT signed with the account's private key, exchanged at its
  ``token_uri`` (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``).

Both answer ``{"access_token", "expires_in", "token_type": "Bearer"}``; the token is sent as
``Authorization: Bearer`` and kept until shortly before it expires (:func:`fresh_for`). A key
changed in the console changes the cache key (:attr:`TokenSource.fingerprint`), so the old token
is never used for the new credential."""

import base64
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ENTRA_AUTHORITY = "https://login.microsoftonline.com"
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
ENTRA_CLIENT = "entra-client"  # the azure options.auth whose key is a client secret
MINTING_TYPES = frozenset({"azure", "gemini"})  # the provider types whose credentials may mint tokens
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")
JWT_LIFETIME = 3600  # seconds: the longest Google accepts
EARLY = 300  # seconds: a token is replaced this long before it expires (or at half its life if short)
DESCRIPTION_CHARS = 300


class CredentialError(ValueError):
    """A credential that cannot mint tokens as it is; the message names what to fix and never
    quotes a secret."""


class TokenError(Exception):
    """Minting failed. ``kind`` is an UpstreamFailure kind (``auth``: the credential was refused,
    fix it; ``refused_address``: the address policy forbids the token endpoint; ``rate_limit``,
    ``server_error``, ``timeout``, ``connection``, ``bad_response``: worth another try)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.kind not in ("auth", "refused_address")

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class TokenSource:
    """How one provider's credential turns into access tokens. ``problem``: why it cannot (no
    secret, a malformed service-account JSON), said when a token is asked for."""

    kind: str  # ENTRA_CLIENT or "service-account"
    token_url: str
    fingerprint: str  # a digest of everything that makes the credential; part of the cache key
    problem: str = ""
    _form: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # holds the secret
    _account: tuple[str, str, str] = field(default=("", "", ""), repr=False)  # email, key id, PEM

    @property
    def fix(self) -> str:
        """What an admin checks when the token endpoint refuses the credential."""
        if self.kind == ENTRA_CLIENT:
            return "check its client secret (the api_key), options.tenant_id and options.client_id"
        return "check its service-account JSON key"

    def request_body(self, now: float | None = None) -> bytes:
        """The form-encoded token request (a fresh JWT for a service account)."""
        if self.problem:
            raise TokenError("auth", self.problem)
        if self.kind == ENTRA_CLIENT:
            return urlencode(self._form).encode()
        email, key_id, pem = self._account
        assertion = jwt_assertion(email=email, key_id=key_id, private_key=pem, audience=self.token_url,
                                  now=time.time() if now is None else now)
        return urlencode({"grant_type": JWT_BEARER, "assertion": assertion}).encode()


TOKEN_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _private_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise CredentialError("private_key is not a PEM private key without a passphrase "
                              "(-----BEGIN PRIVATE KEY----- …).") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialError("private_key must be an RSA key (a service account's key signs RS256).")
    return key


def jwt_assertion(*, email: str, key_id: str, private_key: str, audience: str, now: float) -> str:
    """The RS256 JWT a service account proves itself with (Google's OAuth 2.0 for server to
    server applications): ``iss`` the account, ``scope`` cloud-platform, ``aud`` the token URI,
    valid for :data:`JWT_LIFETIME` seconds."""
    header = {"alg": "RS256", "typ": "JWT", **({"kid": key_id} if key_id else {})}
    issued = int(now)
    claims = {"iss": email, "scope": GOOGLE_SCOPE, "aud": audience, "iat": issued, "exp": issued + JWT_LIFETIME}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    signature = _private_key(private_key).sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def token_url_check(url: Any, *, what: str) -> str:
    """``url`` as an http(s) URL with a host and no credentials, query or fragment; whether it
    may be contacted is the guarded clients' address policy (core/net.py)."""
    if not isinstance(url, str) or not url.strip():
        raise CredentialError(f"{what} must be an https URL.")
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password \
            or parts.query or parts.fragment or any(c.isspace() for c in text):
        raise CredentialError(f"{what} must be an https URL with a host and no query or fragment "
                              f"(got {text[:200]!r}).")
    return text


def looks_like_service_account(api_key: str) -> bool:
    """Whether a key is meant as a JSON document (a service account's key) rather than a token."""
    return api_key.lstrip().startswith("{")


def service_account_parse(api_key: str) -> dict[str, str]:
    """A service account's JSON key checked: ``type`` ``service_account``, ``client_email``,
    ``private_key`` (an RSA PEM that loads) and ``token_uri`` (an http(s) URL). CredentialError
    naming the field otherwise; the private key is never quoted."""
    try:
        data = json.loads(api_key)
    except ValueError:
        raise CredentialError("The key starts with '{' but is not valid JSON: paste the service account's "
                              "JSON key file as it was downloaded.") from None
    if not isinstance(data, dict):
        raise CredentialError("A service-account key must be a JSON object.")
    if data.get("type") != "service_account":
        raise CredentialError(f"The JSON key's type must be 'service_account' (got {str(data.get('type'))[:40]!r}); "
                              "create a key for a service account in the Google Cloud console.")
    missing = [name for name in SERVICE_ACCOUNT_FIELDS if not isinstance(data.get(name), str) or not data[name].strip()]
    if missing:
        raise CredentialError(f"The service-account JSON key has no {', '.join(missing)}.")
    _private_key(data["private_key"])
    token_url_check(data["token_uri"], what="The service-account JSON key's token_uri")
    key_id = data.get("private_key_id")
    return {"client_email": data["client_email"].strip(), "private_key": data["private_key"],
            "token_uri": data["token_uri"].strip(), "private_key_id": key_id if isinstance(key_id, str) else ""}


def service_account_email(api_key: str) -> str:
    """The client_email of a service-account JSON key ("" when it is not one): not a secret, what
    the console shows instead of a masked key."""
    if not looks_like_service_account(api_key):
        return ""
    try:
        data = json.loads(api_key)
    except ValueError:
        return ""
    email = data.get("client_email") if isinstance(data, dict) else None
    return email if isinstance(email, str) and data.get("type") == "service_account" else ""


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def is_vertex(base_url: str) -> bool:
    """Whether a gemini provider's base URL is Vertex AI's (``…/projects/{p}/locations/{l}/…``,
    OAuth bearer token) rather than the Gemini API's (``x-goog-api-key``)."""
    return "/projects/" in base_url


@lru_cache(maxsize=512)
def _source(provider_type: str, api_key: str, options: tuple[tuple[str, str], ...],
            base_url: str) -> TokenSource | None:
    opts = dict(options)
    if provider_type == "azure" and opts.get("auth") == ENTRA_CLIENT:
        authority = (opts.get("authority") or ENTRA_AUTHORITY).rstrip("/")
        tenant, client = opts.get("tenant_id", ""), opts.get("client_id", "")
        url = f"{authority}/{tenant}/oauth2/v2.0/token"
        problem = "" if api_key else "it has no client secret: set its api_key to the app registration's secret"
        if not tenant or not client:
            problem = "it has no options.tenant_id or options.client_id"
        form = (("grant_type", "client_credentials"), ("client_id", client), ("client_secret", api_key),
                ("scope", ENTRA_SCOPE))
        return TokenSource(ENTRA_CLIENT, url, _digest(ENTRA_CLIENT, url, client, api_key), problem, _form=form)
    if provider_type == "gemini" and (is_vertex(base_url) or opts.get("auth") == "vertex") \
            and looks_like_service_account(api_key):
        try:
            account = service_account_parse(api_key)
        except CredentialError as exc:
            return TokenSource("service-account", "", _digest(api_key),
                               f"its service-account JSON key is unusable: {exc}")
        return TokenSource("service-account", account["token_uri"], _digest(api_key),
                           _account=(account["client_email"], account["private_key_id"], account["private_key"]))
    return None


def token_source(provider_type: str, api_key: str, options: Mapping[str, Any] | tuple[tuple[str, str], ...],
                 base_url: str) -> TokenSource | None:
    """The token source of a provider's credential, or None when its key is sent as it is."""
    if provider_type not in MINTING_TYPES:  # every attempt asks: the other types answer at once
        return None
    items = options.items() if isinstance(options, Mapping) else options
    return _source(provider_type, api_key or "", tuple(sorted((k, v) for k, v in items if isinstance(v, str))),
                   base_url)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= DESCRIPTION_CHARS else line[:DESCRIPTION_CHARS - 1] + "…"


def token_answer(source: TokenSource, *, provider: str, status: int, body: Any, snippet: str) -> tuple[str, float]:
    """(access token, seconds it lives) from the token endpoint's answer (``body``: its JSON, or
    None), or TokenError whose message names the provider, the endpoint and the endpoint's own
    error description."""
    where = f"Provider '{provider}' could not get an access token from {source.token_url}"
    if status != 200:
        if isinstance(body, dict) and (body.get("error") or body.get("error_description")):
            detail = ": ".join(_first_line(str(body[k])) for k in ("error", "error_description") if body.get(k))
        else:
            detail = _first_line(snippet) or "no details"
        if status == 429:
            return _raise("rate_limit", f"{where}: it is rate limiting ({detail}).")
        if status >= 500:
            return _raise("server_error", f"{where}: it answered {status} ({detail}).")
        if 300 <= status < 400:
            return _raise("auth", f"{where}: it answered a redirect ({status}), which is not followed; "
                                  "give the token endpoint's own URL.")
        return _raise("auth", f"{where} ({status} {detail}); {source.fix}.")
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token or not token.isascii() or any(c.isspace() for c in token):
        return _raise("bad_response", f"{where}: its answer has no access_token.")
    kind = body.get("token_type", "Bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        return _raise("bad_response", f"{where}: it issued a {str(kind)[:40]!r} token, not a Bearer one.")
    lifetime = body.get("expires_in", 3600)
    if isinstance(lifetime, str) and lifetime.isdigit():  # Entra's v1 endpoint sends a string
        lifetime = int(lifetime)
    if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
        return _raise("bad_response", f"{where}: its answer's expires_in is not a number of seconds.")
    return token, float(lifetime)


def _raise(kind: str, message: str):
    raise TokenError(kind, message)


def fresh_for(lifetime: float) -> float:
    """How long a token that lives ``lifetime`` seconds is used: until :data:`EARLY` seconds
    before it expires, or half its life when it is short."""
    return lifetime - EARLY if lifetime > 2 * EARLY else lifetime / 2


CacheKey = tuple[int, str]  # (provider id, the credential's fingerprint)


class TokenStore:
    """Access tokens by (provider id, credential fingerprint), each until it is due for renewal.
    Per process: a token is a secret, and a process mints one at most every ~55 minutes per
    provider, so sharing through Redis would save little and put secrets in one more place."""

    def __init__(self) -> None:
        self._tokens: dict[CacheKey, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> str | None:
        with self._lock:
            found = self._tokens.get(key)
            if found is None:
                return None
            if found[1] <= time.monotonic():
                del self._tokens[key]
                return None
            return found[0]

    def put(self, key: CacheKey, token: str, lifetime: float) -> None:
        with self._lock:
            # a provider's older credentials are done with: their tokens go
            for old in [k for k in self._tokens if k[0] == key[0] and k != key]:
                del self._tokens[old]
            self._tokens[key] = (token, time.monotonic() + fresh_for(lifetime))

    def drop(self, key: CacheKey, token: str) -> bool:
        """Forget ``token`` (an upstream refused it), unless another has replaced it already."""
        with self._lock:
            if self._tokens.get(key, ("",))[0] == token:
                del self._tokens[key]
                return True
            return False

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


TOKENS = TokenStore()
