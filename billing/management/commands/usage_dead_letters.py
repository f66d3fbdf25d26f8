"""``manage.py usage_dead_letters``: list, retry or discard the usage rows the database refused
(billing.UsageDeadLetter), through billing/dead_letter_services.py."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.dead_letter_services import (
    usage_dead_letters,
    usage_dead_letters_discard,
    usage_dead_letters_retry,
)
from core.errors import TollgateError
from tenants.access import SYSTEM


def _days(value: str) -> int:
    if not value.isdigit():
        raise CommandError(f"--older-than takes a whole number of days, e.g. --older-than 30 (got '{value}').")
    return int(value)


class Command(BaseCommand):
    help = (
        "Usage rows the database refused (set aside in the dead-letter table). --list (the default) shows "
        "them; --retry writes them through the ledger (a request id already there is not counted twice; a row "
        "refused again stays with the new reason); --discard deletes them, each with an audit event holding "
        "the row. IDs name dead letters; --older-than DAYS picks those set aside more than DAYS days ago."
    )

    def add_arguments(self, parser):
        actions = parser.add_mutually_exclusive_group()
        actions.add_argument("--list", action="store_true", help="show the dead letters (the default)")
        actions.add_argument("--retry", action="store_true", help="write them to the ledger")
        actions.add_argument("--discard", action="store_true", help="delete them (audited); needs IDs or --older-than")
        parser.add_argument("ids", nargs="*", type=int, metavar="ID", help="dead letter ids (default: all)")
        parser.add_argument("--older-than", metavar="DAYS", default=None,
                            help="only those set aside more than DAYS days ago")

    def handle(self, *args, ids: list[int], retry: bool, discard: bool, older_than: str | None, **options):
        before = timezone.now() - timedelta(days=_days(older_than)) if older_than is not None else None
        if discard and not ids and before is None:
            raise CommandError("--discard deletes billing data: name the dead letters (IDs, see --list) or pick "
                               "them by age with --older-than DAYS.")
        try:
            letters = usage_dead_letters(ids=ids or None, before=before)
        except TollgateError as exc:
            raise CommandError(exc.message) from None
        if retry:
            result = usage_dead_letters_retry(letters=letters, actor=SYSTEM)
            for letter_id, reason in result.kept.items():
                self.stdout.write(f"{letter_id}\tkept\t{reason.splitlines()[0][:200]}")
            self.stderr.write(f"retried: {len(result.written)} written to the ledger, {len(result.kept)} kept")
            if result.kept:
                raise CommandError(f"{len(result.kept)} dead letter(s) were refused again; see their reasons above.")
            return
        if discard:
            count = usage_dead_letters_discard(letters=letters, actor=SYSTEM)
            self.stderr.write(f"discarded {count} dead letter(s); each is in the audit log (usage_dead_letter.discard)")
            return
        shown = 0
        for letter in letters.iterator():
            reason = letter.reason.splitlines()[0][:200] if letter.reason else ""
            self.stdout.write(f"{letter.pk}\t{letter.created_at:%Y-%m-%d %H:%M:%S}\ttenant {letter.tenant_id}\t"
                              f"{letter.request_id or '-'}\t{reason}")
            shown += 1
        self.stderr.write(f"{shown} dead letter(s) waiting")
