"""Shared helpers that every app uses, written once: the tenant's time zone (``core.timezones``)
and money as people read it (``core.money``). No models, and no import of any Tollgate app —
only the standard library, Django and third-party packages — so any layer may import it."""
