"""Checks for text a user sets that Tollgate later puts into an HTTP header: a budget's name
(the /v1 response header x-tollgate-budget-downgrade), a provider's name and its models' ids
(x-tollgate-model), its API key and extra headers (sent upstream). A line break there makes
the HTTP server or client refuse the header, so every affected request fails with a 500;
these checks refuse such text where it comes in. Services call them, so the REST API, the
console and the admin all do."""

import re
import unicodedata

from core.errors import InvalidInput

# RFC 9110 field-name: a token.
HEADER_NAME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # use fullmatch
MAX_HEADER_NAME = 100
MAX_HEADER_VALUE = 2000
# Set by Tollgate or its HTTP clients on every request; never taken from configuration.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})

_NAMES = {
    "\n": "a line feed (LF)",
    "\r": "a carriage return (CR)",
    "\t": "a tab",
    "\x00": "a NUL byte",
}


def control_character(value: str) -> str | None:
    """The first control character in ``value`` in words ("a line feed (LF)"), or None."""
    for char in value:
        if unicodedata.category(char) == "Cc":
            return _NAMES.get(char, f"the control character U+{ord(char):04X}")
    return None


def text_check(value: str, *, field: str, what: str) -> str:
    """``value`` unless it holds a control character (CR, LF, tab, NUL, …)."""
    found = control_character(value)
    if found:
        raise InvalidInput(
            f"{what} must not contain line breaks or other control characters (it has {found}).",
            field=field,
        )
    return value


def header_name_check(name: object, *, field: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInput("A header name must be a non-empty string.", field=field)
    if len(name) > MAX_HEADER_NAME or not HEADER_NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"{name[:MAX_HEADER_NAME]!r} is not a valid header name: use up to "
            f"{MAX_HEADER_NAME} letters, digits and !#$%&'*+.^_`|~- (no spaces, colons or "
            "line breaks).",
            field=field,
        )
    return name


def header_value_check(value: object, *, field: str, what: str = "A header value") -> str:
    """Printable ASCII (spaces allowed): what every HTTP client Tollgate uses can send."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string.", field=field)
    if len(value) > MAX_HEADER_VALUE:
        raise InvalidInput(f"{what} is longer than {MAX_HEADER_VALUE} characters.", field=field)
    text_check(value, field=field, what=what)
    if not value.isascii():
        raise InvalidInput(
            f"{what} must be ASCII: it is sent in an HTTP header (percent-encode other "
            "characters).",
            field=field,
        )
    return value


def headers_check(headers: object, *, field: str) -> dict[str, str]:
    """Configured headers (a provider's extra headers): names are tokens Tollgate does not
    set itself, values printable ASCII. Errors name ``<field>.<header name>``."""
    if not isinstance(headers, dict):
        raise InvalidInput(f"{field} must be an object of header names and values.", field=field)
    for name, value in headers.items():
        path = f"{field}.{name}"
        header_name_check(name, field=path)
        if name.lower() in RESERVED_HEADERS:
            raise InvalidInput(
                f"'{name}' cannot be sent as an extra header: Tollgate sets it itself.", field=path
            )
        header_value_check(value, field=path, what=f"The value of header '{name}'")
    return dict(headers)
