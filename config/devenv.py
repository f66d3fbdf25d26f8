"""``python -m config.devenv``: write a development ``.env`` (DEBUG on, fresh random secrets)
the first time ``make run`` starts, so later ``manage.py`` commands use the same keys.
Never overwrites an existing file."""

import os
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent


def main() -> int:
    path = Path(os.environ.get("ENV_FILE") or BASE_DIR / ".env")
    if path.exists():
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by `make run` for local development. See .env.example for every setting.\n"
        "DEBUG=true\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"ENCRYPTION_KEYS={Fernet.generate_key().decode()}\n"
    )
    path.chmod(0o600)
    print(f"wrote {path} (development settings with fresh secrets)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
