"""The Django admin for providers, their models and tenants' model choices. Provider changes are
checked and saved by the same services as the API, secrets are write-only, and actions sync a
provider's catalog or test its connection."""

from django import forms
from django.contrib import admin, messages

from core.errors import TollgateError
from providers import services
from providers.admin_secrets import Secret, SecretFieldsAdmin, SecretInputs
from providers.crypto import mask
from providers.forms import parse_headers, provider_name_clean
from providers.models import Provider, ProviderModel, ProviderType, TenantModel
from providers.services import PROVIDER_PLAIN_FIELDS
from providers.sync import connection_test, provider_sync
from tenants.access import Principal


class ProviderForm(SecretInputs, forms.ModelForm):
    """Checked by the API's rules and saved by the same services: the base URL is normalized and
    vetted (core.net), the type detected when not chosen, and a new base URL needs the key
    and headers typed again. The secrets are write-only (see providers.admin_secrets)."""

    name = forms.CharField(max_length=64, help_text="Used in model ids: <name>:<model>.")
    provider_type = forms.ChoiceField(
        required=False, label="Type",
        choices=[("", "Detect from the base URL"), *ProviderType.choices],
        help_text="On a change, empty keeps the current type.",
    )
    base_url = forms.CharField(
        required=False, max_length=500, label="Base URL",
        help_text="e.g. https://api.openai.com/v1 or http://gpu-box:11434. "
        "Empty: the type's well-known URL.",
    )

    class Meta:
        model = Provider
        fields = ["owner", "name", "provider_type", "base_url", "options", *PROVIDER_PLAIN_FIELDS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # the admin leaves these to the services, so the form fills them
            self.initial.setdefault("provider_type", self.instance.provider_type)
            self.initial.setdefault("base_url", self.instance.base_url)

    def clean_name(self) -> str:
        return provider_name_clean(self.cleaned_data["name"])

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        data = {"name": cleaned["name"], "base_url": cleaned.get("base_url") or "",
                **{f: cleaned[f] for f in PROVIDER_PLAIN_FIELDS if f in cleaned},
                **self.secret_changes()}
        if cleaned.get("provider_type"):
            data["provider_type"] = cleaned["provider_type"]
        if cleaned.get("options") is not None:
            data["options"] = cleaned["options"]
        editing = self.instance if self.instance.pk else None
        owner = editing.owner if editing else cleaned.get("owner")
        try:
            services.provider_validate(owner=owner, data=data, provider=editing)
            if editing is not None and editing.enabled and cleaned.get("enabled") is False:
                services.provider_defaults_check(provider=editing, doing="disabling it")
        except TollgateError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        self.service_data = data
        return cleaned


class DefaultsKeptOnDelete:
    """Deleting (one or a selection) is refused while a default model would then name nothing: the
    confirmation page lists each such default as a protected object (providers.default_models)."""

    def defaults_refusal(self, obj) -> str:
        raise NotImplementedError

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms, protected = super().get_deleted_objects(objs, request)
        for obj in objs:
            try:
                self.defaults_refusal(obj)
            except TollgateError as exc:
                protected = [*protected, exc.message]
        return deleted, counts, perms, protected


@admin.register(Provider)
class ProviderAdmin(DefaultsKeptOnDelete, SecretFieldsAdmin):
    form = ProviderForm
    secret_fields = {
        "api_key": Secret(label="API key", hint=mask),
        "extra_headers": Secret(
            label="extra headers", hint=lambda headers: ", ".join(sorted(headers or {})),
            parse=parse_headers, cleared={}, multiline=True, max_length=20_000,
            help_text="One 'Name: value' per line; the hint shows the stored names only.",
        ),
    }
    fields = ["owner", "name", "display_name", "provider_type", "base_url", "options", "enabled", "priority",
              "timeout_seconds", "max_retries", "auto_sync", "sync_interval_minutes", "sync_status",
              "last_sync_at", "last_sync_error"]
    # Checked and saved by the services (normalized, vetted, type detected) rather than the model
    # form, whose URL validator would refuse hosts the API accepts, e.g. http://gpu-box:11434.
    exclude = ["provider_type", "base_url"]
    list_display = ["name", "display_name", "provider_type", "owner", "enabled", "priority",
                    "api_key", "sync_status", "last_sync_at"]
    list_filter = ["provider_type", "enabled", "sync_status", ("owner", admin.EmptyFieldListFilter)]
    search_fields = ["name", "display_name", "base_url", "owner__slug"]
    list_select_related = ["owner"]
    readonly_fields = ["sync_status", "last_sync_at", "last_sync_error"]
    actions = ["sync_now", "test_connection"]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        # A provider, and the key its owner gave it, stays with that owner.
        return ["owner", *fields] if obj is not None else fields

    def defaults_refusal(self, obj):
        services.provider_defaults_check(provider=obj, doing="deleting it")

    def save_model(self, request, obj, form, change):
        actor = Principal(user=request.user)
        data = form.service_data
        if change:
            saved = services.provider_update(provider=Provider.objects.get(pk=obj.pk), data=data,
                                             actor=actor)
        else:
            saved = services.provider_create(owner=form.cleaned_data.get("owner"), data=data,
                                             actor=actor)
        obj.pk = saved.pk
        obj.refresh_from_db()

    @admin.action(description="Sync now", permissions=["change"])
    def sync_now(self, request, queryset):
        for provider in queryset:
            try:
                result = provider_sync(provider=provider)
            except TollgateError as exc:
                self.message_user(request, f"{provider.name}: {exc.message}", level=messages.ERROR)
                continue
            self.message_user(
                request,
                f"{provider.name}: {result.added} added, {result.updated} updated, {result.stale} stale, "
                f"{result.unchanged} unchanged.",
            )

    @admin.action(description="Test connection", permissions=["view"])
    def test_connection(self, request, queryset):
        for provider in queryset:
            report = connection_test(provider=provider)
            if report.reachable:
                self.message_user(
                    request, f"{provider.name}: reachable, {report.model_count} models, {report.latency_ms} ms."
                )
            else:
                self.message_user(request, f"{provider.name}: {report.error}", level=messages.ERROR)


class ModelDisableForm(forms.ModelForm):
    """Switching a model off (a ProviderModel, or a tenant's choice of a platform model) is refused
    while a default model names it directly and would then name nothing."""

    def clean(self):
        cleaned = super().clean()
        row = self.instance
        if row.pk and row.enabled and cleaned.get("enabled") is False:
            model, tenant = (row.provider_model, row.tenant) if isinstance(row, TenantModel) else (row, None)
            try:
                services.provider_model_defaults_check(provider_model=model, tenant=tenant, doing="disabling it")
            except TollgateError as exc:
                self.add_error("enabled", exc.message)
        return cleaned


@admin.register(ProviderModel)
class ProviderModelAdmin(DefaultsKeptOnDelete, admin.ModelAdmin):
    form = ModelDisableForm
    list_display = ["model_id", "provider", "mode", "enabled", "stale", "context_length",
                    "input_price", "output_price", "price_source"]
    list_filter = ["mode", "enabled", "stale", "price_source", "supports_tools", "supports_vision", "provider"]
    search_fields = ["model_id", "display_name", "provider__name"]
    list_select_related = ["provider"]

    def defaults_refusal(self, obj):
        services.provider_model_defaults_check(provider_model=obj, tenant=None, doing="deleting it")


@admin.register(TenantModel)
class TenantModelAdmin(DefaultsKeptOnDelete, admin.ModelAdmin):
    form = ModelDisableForm
    list_display = ["tenant", "provider_model", "enabled", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["tenant__slug", "provider_model__model_id", "provider_model__provider__name"]
    list_select_related = ["tenant", "provider_model__provider"]
    autocomplete_fields = ["tenant"]
    raw_id_fields = ["provider_model"]

    def defaults_refusal(self, obj):
        if obj.enabled:
            services.provider_model_defaults_check(provider_model=obj.provider_model, tenant=obj.tenant,
                                                   doing="deleting this choice")
