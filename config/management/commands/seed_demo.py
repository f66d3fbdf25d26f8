"""The embedded default's demo: a tenant with the built-in mock provider, a login and a
chat key. Safe to run again: nothing is duplicated, and the same login and key are printed
(they are kept in VAR_DIR/demo-credentials.json, a local development file)."""

import json
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from providers.models import ProviderType
from providers.services import provider_get_or_create, provider_model_set_enabled
from providers.sync import provider_sync
from tenants.access import SYSTEM
from tenants.keys import key_hash
from tenants.models import ApiKey, KeyScope, Membership, Role, Tenant
from tenants.services import api_key_create, tenant_create, tenant_update

DEMO_SLUG = "demo"
DEMO_USER = "demo"
DEMO_MODEL = "mock-fast"


class Command(BaseCommand):
    help = "Create (or find) the demo tenant, login and chat key, and print them."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="where the web server listens")

    def handle(self, *args, port: int, **options):
        path = settings.VAR_DIR / "demo-credentials.json"
        saved = json.loads(path.read_text()) if path.exists() else {}

        provider, _ = provider_get_or_create(name="mock", provider_type=ProviderType.MOCK, display_name="Mock")
        provider_sync(provider=provider)

        chat_key = saved.get("chat_key")
        with transaction.atomic():
            tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
            new = tenant is None
            if new:
                created = tenant_create(slug=DEMO_SLUG, name="Demo tenant")
                tenant, chat_key = created.tenant, created.chat_key

            User = get_user_model()
            user = User.objects.filter(username=DEMO_USER).first()
            password = saved.get("password")
            if user is None or not password or not user.check_password(password):
                password = secrets.token_urlsafe(12)
                user = user or User(username=DEMO_USER, email="demo@example.com")
                user.is_staff = user.is_superuser = True
                user.set_password(password)
                user.save()
            Membership.objects.get_or_create(tenant=tenant, user=user, defaults={"role": Role.OWNER})
            for model in provider.models.filter(stale=False):
                provider_model_set_enabled(provider_model=model, tenant=tenant, enabled=True, actor=SYSTEM)
            if new:  # once its models are enabled: a default model must name one the tenant may use
                tenant_update(tenant=tenant, changes={"default_model": DEMO_MODEL}, actor=SYSTEM)

            live = chat_key and ApiKey.objects.filter(
                tenant=tenant, key_hash=key_hash(chat_key), revoked_at__isnull=True
            ).exists()
            if not live:
                _, chat_key = api_key_create(
                    tenant=tenant, name="demo chat key", scope=KeyScope.CHAT, actor=SYSTEM, created_by=user
                )

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"password": password, "chat_key": chat_key}))
        path.chmod(0o600)
        self.stdout.write(
            "\nTollgate demo\n"
            f"  login:     {DEMO_USER} / {password}   (http://127.0.0.1:{port}/app/)\n"
            f"  tenant:    {tenant.slug} (id {tenant.pk}), default model {DEMO_MODEL} on the mock provider\n"
            f"  chat key:  {chat_key}\n"
        )
