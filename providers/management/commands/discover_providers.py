"""``manage.py discover_providers`` (run by ``make run``): create or update the platform providers
that the environment describes (providers/discovery.py reads the keys and URLs); safe to run again."""

from django.core.management.base import BaseCommand, CommandError

from core.errors import TollgateError
from providers.discovery import discover
from providers.models import Provider
from providers.services import provider_create, provider_update
from tenants.access import SYSTEM


class Command(BaseCommand):
    help = (
        "Create or update platform providers from the environment: OPENAI_API_KEY, "
        "OPENAI_ORG_ID (its OpenAI-Organization header), ANTHROPIC_API_KEY, OPENROUTER_API_KEY "
        "(+ OPENROUTER_BASE_URL), the presets' keys "
        "(MISTRAL_API_KEY, GROQ_API_KEY, TOGETHER_API_KEY, DEEPSEEK_API_KEY, XAI_API_KEY, "
        "FIREWORKS_API_KEY, PERPLEXITY_API_KEY, CEREBRAS_API_KEY, each with an optional <NAME>_BASE_URL), "
        "VLLM_BASE_URL, LMSTUDIO_BASE_URL, OLLAMA_BASE_URL (or OLLAMA_HOST + OLLAMA_PORT) and any "
        "PROVIDER_<NAME>_URL with PROVIDER_<NAME>_KEY. Safe to run again."
    )

    def handle(self, *args, **options):
        found = discover()
        failed = 0
        for item in found:
            existing = Provider.objects.filter(owner__isnull=True, name=item.name).first()
            data = {"base_url": item.base_url, "api_key": item.api_key}
            if item.provider_type:
                data["provider_type"] = item.provider_type
            if item.preset:
                data["preset"] = item.preset
            if item.extra_headers is not None:
                data["extra_headers"] = item.extra_headers
            try:
                if existing is None:
                    provider = provider_create(owner=None, data={"name": item.name, **data})
                    outcome = "created"
                else:
                    unchanged = existing.base_url.rstrip("/") == item.base_url.rstrip("/") and (
                        existing.api_key == item.api_key
                    ) and (not item.provider_type or existing.provider_type == item.provider_type) and (
                        item.extra_headers is None or existing.extra_headers == item.extra_headers)
                    if unchanged:
                        provider, outcome = existing, "unchanged"
                    else:
                        provider = provider_update(provider=existing, data=data, actor=SYSTEM)
                        outcome = "updated"
            except TollgateError as exc:
                failed += 1
                self.stderr.write(f"{item.name}: {exc.message}")
                continue
            self.stdout.write(f"{outcome:9} {provider.name} ({provider.provider_type}) {provider.base_url}")
        if not found:
            self.stdout.write("no providers described in the environment")
        if failed:
            raise CommandError(f"{failed} provider(s) could not be set up")

