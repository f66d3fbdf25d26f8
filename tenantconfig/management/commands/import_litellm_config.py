"""``manage.py import_litellm_config config.yaml --tenant <slug> [--dry-run]``: a LiteLLM proxy
config turned into the tenant's providers, aliases, prices and budget (tenantconfig/litellm.py),
applied in one transaction; the plan lists what was not imported."""

from django.core.management.base import BaseCommand

from core.errors import TollgateError
from tenantconfig.litellm import litellm_translate
from tenantconfig.management.commands.tenant_config import failure, read_text, tenant_named
from tenantconfig.parsing import document_load, is_litellm
from tenantconfig.schema import ConfigInvalid
from tenantconfig.services import config_apply
from tenants.access import SYSTEM


class Command(BaseCommand):
    help = "Import a LiteLLM config.yaml into a tenant (os.environ/NAME keys are read from the environment now)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="The LiteLLM config.yaml ('-': standard input).")
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--dry-run", action="store_true", help="Print the plan; change nothing.")

    def handle(self, *args, **options):
        tenant = tenant_named(options["tenant"])
        try:
            config = document_load(read_text(options["file"]))
            if not is_litellm(config):
                raise ConfigInvalid(["(document): not a LiteLLM config (no model_list, router_settings or "
                                     "general_settings); a Tollgate document goes to `manage.py tenant_config apply`"])
            document, notes = litellm_translate(config)
            plan = config_apply(tenant=tenant, document=document, actor=SYSTEM, dry_run=options["dry_run"],
                                notes=notes)
        except TollgateError as exc:
            raise failure(exc) from None
        self.stdout.write(plan.text())
        if options["dry_run"] and plan.changes:
            self.stdout.write("Dry run: nothing was changed.")
