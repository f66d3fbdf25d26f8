"""Shared infrastructure that every app uses, written once: errors and the one error shape
(``errors``, ``drf``), the guarded outbound HTTP client (``net``), the DRF parser, schema and
strict fields (``parsers``, ``schema``, ``drf``), console page and form helpers (``pages``,
``forms``), text validation, the Redis client, the tenant's time zone (``timezones``) and money
as people read it (``money``). No models, and no import of any Tollgate app — only the standard
library, Django and third-party packages — so any layer may import it."""
