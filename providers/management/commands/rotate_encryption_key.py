"""``manage.py rotate_encryption_key``: re-encrypt every stored provider secret (API key, extra
headers) under the first key in ENCRYPTION_KEYS, in primary-key batches, then check that no stored
value still needs an older key; ``--check`` only checks."""

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from providers.models import Provider

SECRET_COLUMNS = ("api_key", "extra_headers")


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider secret under the first key in ENCRYPTION_KEYS. "
        "Rotation: put a new key first (keep the old one after it), run this, then remove the "
        "old key. --check only reports whether anything still needs the old key."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="report only; change nothing")
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args, check: bool, batch_size: int, **options):
        if not check:
            rotated = 0
            last = 0
            while True:
                with transaction.atomic():
                    batch = list(
                        Provider.objects.select_for_update().filter(pk__gt=last).order_by("pk")[:batch_size]
                    )
                    for provider in batch:  # loading decrypts with any key; saving encrypts with the first
                        provider.save(update_fields=list(SECRET_COLUMNS))
                    rotated += len(batch)
                if len(batch) < batch_size:
                    break
                last = batch[-1].pk
            self.stdout.write(f"re-encrypted the secrets of {rotated} provider(s) under the newest key")
        behind = self._values_not_under_newest_key()
        if behind:
            raise CommandError(
                f"{behind} stored secret(s) still need an older key; keep it in ENCRYPTION_KEYS "
                "and run rotate_encryption_key."
            )
        self.stdout.write("every stored secret is under the newest key; older keys can be removed")

    def _values_not_under_newest_key(self) -> int:
        newest = Fernet(settings.ENCRYPTION_KEYS[0].encode())
        table = connection.ops.quote_name(Provider._meta.db_table)
        columns = ", ".join(connection.ops.quote_name(c) for c in SECRET_COLUMNS)
        behind = 0
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {table}")
            for row in cursor.fetchall():
                for token in row:
                    if not token:
                        continue
                    try:
                        newest.decrypt(token.encode("ascii"))
                    except InvalidToken:
                        behind += 1
        return behind
