from django import forms
from django.contrib import admin, messages

from providers.crypto import mask
from providers.models import Provider, ProviderModel, TenantModel
from providers.sync import connection_test, provider_sync
from tenants.errors import TollgateError


class ProviderForm(forms.ModelForm):
    """The API key is write-only: the field starts empty and leaving it empty keeps the
    stored key."""

    base_url = forms.URLField(required=False, assume_scheme="https", max_length=500)
    api_key = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the stored key.",
    )

    class Meta:
        model = Provider
        exclude = ["extra_headers"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["api_key"] = ""

    def clean_api_key(self):
        value = self.cleaned_data.get("api_key")
        if not value and self.instance.pk:
            return self.instance.api_key
        return value


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "display_name", "provider_type", "owner", "enabled", "priority",
                    "masked_key", "sync_status", "last_sync_at"]
    list_filter = ["provider_type", "enabled", "sync_status", ("owner", admin.EmptyFieldListFilter)]
    search_fields = ["name", "display_name", "base_url", "owner__slug"]
    list_select_related = ["owner"]
    readonly_fields = ["masked_key", "sync_status", "last_sync_at", "last_sync_error"]
    actions = ["sync_now", "test_connection"]

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

    @admin.display(description="API key")
    def masked_key(self, obj: Provider) -> str:
        return mask(obj.api_key) or "—"


@admin.register(ProviderModel)
class ProviderModelAdmin(admin.ModelAdmin):
    list_display = ["model_id", "provider", "mode", "enabled", "stale", "context_length",
                    "input_price", "output_price", "price_source"]
    list_filter = ["mode", "enabled", "stale", "price_source", "supports_tools", "supports_vision", "provider"]
    search_fields = ["model_id", "display_name", "provider__name"]
    list_select_related = ["provider"]


@admin.register(TenantModel)
class TenantModelAdmin(admin.ModelAdmin):
    list_display = ["tenant", "provider_model", "enabled", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["tenant__slug", "provider_model__model_id", "provider_model__provider__name"]
    list_select_related = ["tenant", "provider_model__provider"]
    autocomplete_fields = ["tenant"]
    raw_id_fields = ["provider_model"]
