"""Provider credentials at rest: Fernet tokens under MultiFernet.

``ENCRYPTION_KEYS`` lists keys newest first. The first encrypts; all decrypt. Rotation adds
a new key in front, runs ``manage.py rotate_encryption_key`` (re-encrypts every value under
the new key), then drops the old key from the list."""

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from providers.adapters.credentials import service_account_email

# The longest key a provider takes: a service account's JSON key is ~2,400 characters (more with
# a 4096-bit key); API keys and client secrets are far shorter.
MAX_KEY_CHARS = 10_000


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 bytes; "
            "make one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`)."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with any key in ENCRYPTION_KEYS; was a key "
            "removed before `rotate_encryption_key` finished?"
        ) from exc


def rotate(token: str) -> str:
    """The same secret re-encrypted under the first (newest) key."""
    return fernet().rotate(token.encode("ascii")).decode("ascii")


def mask(secret: str) -> str:
    """``sk-…abcd``: enough to recognise a key, never enough to use it. A Google service
    account's JSON key shows as its account (``service account name@project.iam…``)."""
    if not secret:
        return ""
    email = service_account_email(secret)
    if email:
        return f"service account {email}"
    head = secret[:3] if len(secret) > 12 else ""
    tail = secret[-4:] if len(secret) > 8 else ""
    return f"{head}…{tail}"


class EncryptedTextField(models.TextField):
    """Stores a Fernet token; Python code sees the plain text. Empty stays empty."""

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(value)


class EncryptedJSONField(models.TextField):
    """A JSON object (e.g. extra headers) stored as one Fernet token."""

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return {}
        return json.loads(decrypt(value))

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        if value in (None, ""):
            return {}
        return json.loads(value)

    def get_prep_value(self, value):
        if not value:
            return ""
        return encrypt(json.dumps(value, sort_keys=True))
