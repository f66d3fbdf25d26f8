"""``manage.py createtenant``: create a tenant, its chat and admin keys and optionally an owner,
and print them as one JSON object (the only time the keys are shown)."""

import json

from django.core.management.base import BaseCommand, CommandError

from core.errors import TollgateError
from tenants.services import tenant_create


class Command(BaseCommand):
    help = (
        "Create a tenant with a chat key and an admin key (and an owner when --admin-email is "
        "given). Prints one JSON object: tenant_id, slug, chat_key, admin_key. The keys are "
        "shown only here."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="lowercase letters, digits and hyphens, e.g. acme")
        parser.add_argument("--name", required=True, help='display name, e.g. "Acme Inc"')
        parser.add_argument("--admin-email", default=None, help="owner's email (user created if new)")

    def handle(self, *args, slug: str, name: str, admin_email: str | None, **options):
        try:
            created = tenant_create(slug=slug, name=name, admin_email=admin_email)
        except TollgateError as exc:
            raise CommandError(exc.message) from None
        out = {
            "tenant_id": created.tenant.pk,
            "slug": created.tenant.slug,
            "chat_key": created.chat_key,
            "admin_key": created.admin_key,
        }
        if created.owner is not None:
            out["owner"] = created.owner.get_username()
        self.stdout.write(json.dumps(out))
