"""The issuer's discovery document ({OIDC_ISSUER}/.well-known/openid-configuration), read on
the first SSO login of a process and kept; never at import time."""

import threading
from dataclasses import dataclass

import requests
from django.conf import settings

from core.errors import TollgateError

_lock = threading.Lock()
_cache: dict[str, "Endpoints"] = {}


class DiscoveryError(TollgateError):
    """The issuer's discovery document could not be read or does not fit."""


@dataclass(frozen=True)
class Endpoints:
    issuer: str
    authorization: str
    token: str
    userinfo: str
    jwks: str


def endpoints() -> Endpoints:
    """The endpoints of the configured issuer (one GET per process and issuer)."""
    issuer = settings.OIDC_ISSUER
    with _lock:
        found = _cache.get(issuer)
    if found is not None:
        return found
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT, allow_redirects=False)
        response.raise_for_status()
        doc = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise DiscoveryError(f"Could not read the SSO issuer's discovery document {url}: {exc}") from None
    if not isinstance(doc, dict) or str(doc.get("issuer", "")).rstrip("/") != issuer:
        raise DiscoveryError(
            f"The discovery document at {url} names issuer {doc.get('issuer') if isinstance(doc, dict) else None!r}, "
            f"not OIDC_ISSUER={issuer}."
        )
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not doc.get(k)]
    if missing:
        raise DiscoveryError(f"The discovery document at {url} has no {', '.join(missing)}.")
    if "RS256" not in doc.get("id_token_signing_alg_values_supported", ["RS256"]):
        raise DiscoveryError(f"The issuer {issuer} does not sign ID tokens with RS256.")
    found = Endpoints(
        issuer=issuer,
        authorization=doc["authorization_endpoint"],
        token=doc["token_endpoint"],
        userinfo=doc.get("userinfo_endpoint") or "",
        jwks=doc["jwks_uri"],
    )
    with _lock:
        _cache[issuer] = found
    return found


def endpoints_forget() -> None:
    """Read the document again on the next login (tests; a changed issuer)."""
    with _lock:
        _cache.clear()
