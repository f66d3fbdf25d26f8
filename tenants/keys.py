"""API key format: ``tg_`` + 40 base62 characters (about 238 bits of randomness).

Keys are random and long, so a plain SHA-256 is a safe one-way store (the same reasoning as
GitHub's and Stripe's tokens) and costs microseconds on the hot path, where a slow password
hash would cost milliseconds per request. The first 12 characters stay visible as a prefix
so people can tell keys apart."""

import hashlib
import secrets
import string
from datetime import datetime

KEY_PREFIX = "tg_"
_ALPHABET = string.ascii_letters + string.digits
_BODY_LENGTH = 40
VISIBLE_PREFIX_LENGTH = 12  # "tg_" + 9 characters


def key_generate() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def key_visible_prefix(raw: str) -> str:
    return raw[:VISIBLE_PREFIX_LENGTH]


def key_looks_valid(raw: str) -> bool:
    return (
        raw.startswith(KEY_PREFIX)
        and len(raw) == len(KEY_PREFIX) + _BODY_LENGTH
        and all(c in _ALPHABET for c in raw[len(KEY_PREFIX):])
    )


# What a caller is told, on /api and /v1 alike (one key check: ``key_refusal``).
MALFORMED = "Invalid API key: Tollgate keys start with 'tg_' followed by 40 letters and digits."
UNKNOWN = "Invalid API key: no such key. Create one in the console or with the API."


def key_refusal(*, masked: str, revoked_at: datetime | None, expires_at: datetime | None,
                now: datetime) -> str | None:
    """Why a stored key may not be used (revoked, expired), in words; None when it may."""
    if revoked_at is not None:
        return f"API key {masked} was revoked at {revoked_at:%Y-%m-%d %H:%M:%S} UTC; use another key."
    if expires_at is not None and expires_at <= now:
        return f"API key {masked} expired at {expires_at:%Y-%m-%d %H:%M:%S} UTC; create a new key."
    return None
