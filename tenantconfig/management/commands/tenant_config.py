"""``manage.py tenant_config export <slug> [-o file]`` writes a tenant's configuration as YAML;
``manage.py tenant_config apply <file> [--tenant slug] [--prune] [--dry-run]`` makes the tenant
match a file (tenantconfig/services.py), printing the plan. A LiteLLM config.yaml (it has a
``model_list``) is translated first, as by ``import_litellm_config``."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import TollgateError
from tenantconfig.document import config_export, document_yaml
from tenantconfig.litellm import litellm_translate
from tenantconfig.parsing import document_load, is_litellm
from tenantconfig.schema import ConfigInvalid
from tenantconfig.services import config_apply, document_tenant_check
from tenants.access import SYSTEM
from tenants.models import Tenant


def tenant_named(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"No tenant with slug '{slug}'; `manage.py createtenant` makes one.")
    return tenant


def read_text(path: str) -> bytes:
    try:
        return Path(path).read_bytes() if path != "-" else sys.stdin.buffer.read()
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror}") from None


def failure(exc: TollgateError) -> CommandError:
    errors = exc.errors if isinstance(exc, ConfigInvalid) else [exc.message]
    return CommandError("the document was not applied:\n  " + "\n  ".join(errors))


class Command(BaseCommand):
    help = "Export a tenant's configuration as YAML, or apply a YAML (or JSON) file to a tenant."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        export = sub.add_parser("export", help="Write the tenant's configuration (no secrets) as YAML.")
        export.add_argument("slug")
        export.add_argument("-o", "--output", help="File to write (default: standard output).")
        apply = sub.add_parser("apply", help="Make a tenant match a configuration file, in one transaction.")
        apply.add_argument("file", help="YAML or JSON file ('-': standard input).")
        apply.add_argument("--tenant", help="Apply to this tenant (default: the file's tenant.slug).")
        apply.add_argument("--prune", action="store_true",
                           help="Delete the providers, aliases and budgets the file does not name.")
        apply.add_argument("--dry-run", action="store_true", help="Print the plan; change nothing.")

    def handle(self, *args, **options):
        if options["action"] == "export":
            text = document_yaml(config_export(tenant=tenant_named(options["slug"])))
            if options.get("output"):
                Path(options["output"]).write_text(text, encoding="utf-8")
                self.stdout.write(f"wrote {options['output']}")
            else:
                self.stdout.write(text, ending="")
            return
        try:
            document = document_load(read_text(options["file"]))
            notes = None
            if is_litellm(document):
                document, notes = litellm_translate(document)
            slug = options.get("tenant") or ((document.get("tenant") or {}).get("slug")
                                             if isinstance(document, dict) else None)
            if not slug:
                raise CommandError("Name the tenant: --tenant <slug> (the file has no tenant.slug).")
            tenant = tenant_named(slug)
            if not options.get("tenant"):
                document_tenant_check(tenant=tenant, document=document)
            elif isinstance(document.get("tenant"), dict):
                document = {**document, "tenant": {k: v for k, v in document["tenant"].items() if k != "slug"}}
            plan = config_apply(tenant=tenant, document=document, actor=SYSTEM, prune=options["prune"],
                                dry_run=options["dry_run"], notes=notes)
        except TollgateError as exc:
            raise failure(exc) from None
        self.stdout.write(plan.text())
        if options["dry_run"] and plan.changes:
            self.stdout.write("Dry run: nothing was changed.")
