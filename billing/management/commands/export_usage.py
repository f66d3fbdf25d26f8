"""``manage.py export_usage``: write a tenant's ledger rows for a range of its local days as CSV or
JSON Lines (billing/export.py), to stdout or to a file that appears only once complete."""

import difflib
import os
import tempfile
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from billing.export import FORMATS, usage_export_write
from core.errors import TollgateError
from tenants.models import Tenant


def _day(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{flag} '{value}' is not a date; use YYYY-MM-DD, e.g. 2025-01-31.") from None


class Command(BaseCommand):
    help = (
        "Write a tenant's ledger rows (one per request, newest first) as CSV or JSON Lines, "
        "streamed with flat memory. --since and --until are local days in the tenant's time "
        "zone, both included. Writes to stdout unless --output is given; a summary goes to stderr."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="the tenant's slug, e.g. acme")
        parser.add_argument("--since", required=True, metavar="YYYY-MM-DD", help="first local day")
        parser.add_argument("--until", required=True, metavar="YYYY-MM-DD", help="last local day (included)")
        parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
        parser.add_argument("--output", metavar="FILE", default=None,
                            help="write here (replaced only once the export is complete) instead of stdout")

    def handle(self, *args, tenant: str, since: str, until: str, fmt: str, output: str | None, **options):
        first, last = _day(since, "--since"), _day(until, "--until")
        if first > last:
            raise CommandError(f"--since {first} is after --until {last}; --until is the last day exported "
                               "(included), so a single day is --since D --until D.")
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            close = difflib.get_close_matches(tenant, Tenant.objects.values_list("slug", flat=True), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise CommandError(f"No tenant with slug '{tenant}'.{hint}")

        try:
            if output is None:
                count = usage_export_write(tenant=found, since=first, until=last, fmt=fmt,
                                           write=lambda chunk: self.stdout.write(chunk, ending=""))
                where = "stdout"
            else:
                count = self._to_file(Path(output), found, first, last, fmt)
                where = output
        except TollgateError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(f"exported {count} row(s) of tenant '{found.slug}', {first} to {last} "
                          f"({found.timezone}), as {fmt} to {where}")

    def _to_file(self, path: Path, tenant: Tenant, first: date, last: date, fmt: str) -> int:
        """Write beside ``path`` and rename at the end: a failed export leaves no half file."""
        if not path.parent.is_dir():
            raise CommandError(f"--output {path}: the folder {path.parent} does not exist.")
        try:
            fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        except OSError as exc:
            raise CommandError(f"--output {path}: cannot write in {path.parent} ({exc.strerror}).") from None
        try:
            with open(fd, "w", encoding="utf-8", newline="") as out:
                count = usage_export_write(tenant=tenant, since=first, until=last, fmt=fmt, write=out.write)
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return count
