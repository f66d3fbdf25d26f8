"""Forms of the console's provider, model and alias pages, with the REST API's rules (the
bounds and name patterns are read from providers.api, so both edges accept the same input),
and how a model is described on a page (capabilities, context, prices)."""

import json
from decimal import Decimal
from typing import Any

from django import forms

from core.errors import InvalidInput
from core.forms import ConsoleForm, api_bounds, number_input
from core.validation import headers_check
from providers.api import (
    ALIAS_NAME_RE,
    NAME_RE,
    AliasIn,
    AliasTargetIn,
    OverridesIn,
    ProviderIn,
)
from providers.base_urls import detect_provider_type
from providers.crypto import MAX_KEY_CHARS
from providers.models import PriceSource, ProviderType, RoutingStrategy
from providers.options import options_clean
from providers.presets import PRESETS

# --- describing a model -------------------------------------------------------------------------


def price_text(value: Decimal | None) -> str:
    """A price per million tokens: ``$2.50``, ``$0.075``; ``unknown`` when there is none."""
    if value is None:
        return "unknown"
    text = format(value.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def context_text(tokens: int | None) -> str:
    if not tokens:
        return ""
    if tokens >= 1_000_000 and tokens % 1_000_000 == 0:
        return f"{tokens // 1_000_000}M"
    if tokens >= 1000:
        return f"{round(tokens / 1000)}k" if tokens % 1000 else f"{tokens // 1000}k"
    return str(tokens)


def model_facts(model) -> dict[str, Any]:
    """What a page shows about a model: id, capabilities, context, prices."""
    known = model.input_price is not None and model.output_price is not None
    return {
        "model": model,
        "value": f"{model.provider.name}:{model.model_id}",
        "display_name": model.display_name or model.model_id,
        "tools": model.supports_tools,
        "vision": model.supports_vision,
        "embedding": model.mode == "embedding",
        "context": context_text(model.context_length),
        "price_known": known,
        "price_in": price_text(model.input_price),
        "price_out": price_text(model.output_price),
        "price_cached": price_text(model.cached_input_price) if model.cached_input_price is not None else "",
        "price_cache_write": price_text(model.cache_write_price) if model.cache_write_price is not None else "",
        "price_source": PriceSource(model.price_source).label if model.price_source in PriceSource.values else "",
        "local": model.price_source == PriceSource.LOCAL,
    }


# --- providers ------------------------------------------------------------------------------------


def parse_headers(text: str) -> dict[str, str]:
    """``Name: value`` lines (blank lines ignored) as a dict, checked by the services' header
    rules (core.validation.headers_check)."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise forms.ValidationError(f"Line {number}: write one header per line as 'Name: value'.")
        try:
            headers_check({name: value}, field="extra_headers")
        except InvalidInput as exc:
            raise forms.ValidationError(f"Line {number}: {exc.message}") from None
        headers[name] = value
    return headers


def parse_options(text: str) -> dict[str, Any] | None:
    """The options field: a JSON object, or None when left empty (the type's defaults, or the
    saved options on an edit)."""
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise forms.ValidationError(f"Options must be JSON ({exc}).") from None
    if not isinstance(value, dict):
        raise forms.ValidationError('Options must be a JSON object, e.g. {"deployments": {"my-gpt4o": "gpt-4o"}}.')
    return value


def provider_name_clean(name: str) -> str:
    """A provider name by the REST API's rule (the console's and the admin's forms)."""
    name = name.strip()
    if not NAME_RE.match(name):
        raise forms.ValidationError(
            "Use 1-64 lowercase letters, digits, '.', '_' or '-' (no ':'; the name prefixes model "
            "ids as <name>:<model>)."
        )
    return name


class ProviderForm(ConsoleForm):
    """Add or change a tenant's provider. The key is write-only: the field is never filled
    from the saved key; left empty on an edit it keeps the key."""

    preset = forms.ChoiceField(
        required=False, label="Service",
        choices=[("", "Other (give the type or base URL)"), *[(p.name, p.display_name) for p in PRESETS.values()]],
        help_text="A known OpenAI-compatible service: its base URL, name and display name are filled in "
        "where left empty.",
    )
    name = forms.CharField(max_length=64, required=False, help_text="Lowercase letters, digits, '.', '_' or '-'. "
                           "Clients send models as <name>:<model>. Empty with a service: the service's name.")
    display_name = forms.CharField(max_length=200, required=False, label="Display name")
    provider_type = forms.ChoiceField(
        required=False, label="Type",
        choices=[("", "Detect from the base URL"),
                 *[(value, label) for value, label in ProviderType.choices if value != ProviderType.MOCK]],
    )
    base_url = forms.CharField(max_length=500, required=False, label="Base URL",
                               help_text="e.g. https://api.openai.com/v1 or http://gpu-box:11434. Empty: "
                               "the type's well-known URL.")
    api_key = forms.CharField(max_length=MAX_KEY_CHARS, required=False, label="API key", strip=True,
                              widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                              help_text="Stored encrypted, never shown again. Azure with auth \"entra-client\": the "
                              "client secret. Vertex AI: a service account's JSON key file, pasted whole (Tollgate "
                              "mints access tokens with either).")
    clear_api_key = forms.BooleanField(required=False, label="Remove the saved key")
    extra_headers = forms.CharField(
        required=False, label="Extra headers", widget=forms.Textarea(attrs={"rows": 2, "autocomplete": "off"}),
        help_text="One 'Name: value' per line; sent with every request. Values are stored encrypted and "
        "never shown again.",
    )
    clear_extra_headers = forms.BooleanField(required=False, label="Remove the saved headers")
    options = forms.CharField(
        required=False, label="Options (JSON)", widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        help_text='Settings of the provider type. Azure OpenAI: {"api_version": "2024-10-21", "auth": "api-key", '
        '"entra-client" (with "tenant_id", "client_id", optional "authority") or "entra", "deployments": '
        '{"my-gpt4o": "gpt-4o"}}. Gemini on Vertex AI: {"auth": "vertex", "project": "…", "location": "…"}. '
        'Empty: the type\'s defaults.',
    )
    enabled = forms.BooleanField(required=False, initial=True)
    priority = forms.IntegerField(initial=0, widget=number_input("1"), help_text="Higher wins when two "
                                  "providers offer a model.", **api_bounds(ProviderIn, "priority"))
    timeout_seconds = forms.FloatField(initial=60.0, label="Timeout (seconds)", widget=number_input("0.5"),
                                       **api_bounds(ProviderIn, "timeout_seconds"))
    max_retries = forms.IntegerField(initial=2, label="Retries", widget=number_input("1"),
                                     **api_bounds(ProviderIn, "max_retries"))
    auto_sync = forms.BooleanField(required=False, initial=True, label="Sync the model list automatically")
    sync_interval_minutes = forms.IntegerField(initial=1440, label="Sync every (minutes)", widget=number_input("1"),
                                               **api_bounds(ProviderIn, "sync_interval_minutes"))

    PLAIN = ("display_name", "enabled", "priority", "timeout_seconds", "max_retries", "auto_sync",
             "sync_interval_minutes")

    def __init__(self, data=None, *, provider=None):
        self.provider = provider
        initial = None
        if provider is not None:
            initial = {f: getattr(provider, f) for f in ("name", "provider_type", "base_url", *self.PLAIN)}
            initial["options"] = json.dumps(provider.options, indent=1) if provider.options else ""
        super().__init__(data, initial=initial)
        if provider is not None and provider.provider_type == "mock":
            self.fields["provider_type"].choices = [*self.fields["provider_type"].choices, ("mock", "Mock")]
        if provider is None:
            del self.fields["clear_api_key"], self.fields["clear_extra_headers"]
        else:
            del self.fields["preset"]  # a saved provider's preset follows its base URL

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name and (self.provider is not None or not self.data.get("preset")):
            raise forms.ValidationError("This field is required.")
        return provider_name_clean(name) if name else ""

    def clean_extra_headers(self) -> dict[str, str]:
        return parse_headers(self.cleaned_data.get("extra_headers") or "")

    def clean_options(self) -> dict[str, Any] | None:
        return parse_options(self.cleaned_data.get("options") or "")

    def clean(self):
        cleaned = super().clean()
        options = cleaned.get("options")
        kind = cleaned.get("provider_type") or (self.provider.provider_type if self.provider else "") or (
            detect_provider_type(cleaned.get("base_url") or "") if cleaned.get("base_url") else "")
        if options is not None and kind:
            try:
                options_clean(kind, options)
            except InvalidInput as exc:
                self.add_error("options", exc.message)
        return cleaned

    def service_data(self) -> dict[str, Any]:
        """What provider_create / provider_update take: secrets only when they change."""
        data = self.cleaned_data
        out: dict[str, Any] = {"base_url": data["base_url"].strip(), **{f: data[f] for f in self.PLAIN}}
        if data["name"]:
            out["name"] = data["name"]
        if data.get("preset"):
            out["preset"] = data["preset"]
            if not data["display_name"]:
                del out["display_name"]  # the preset's
        if data["provider_type"]:
            out["provider_type"] = data["provider_type"]
        if data["api_key"]:
            out["api_key"] = data["api_key"]
        elif data.get("clear_api_key"):
            out["api_key"] = ""
        if data["extra_headers"]:
            out["extra_headers"] = data["extra_headers"]
        elif data.get("clear_extra_headers"):
            out["extra_headers"] = {}
        if data.get("options") is not None:
            out["options"] = data["options"]
        return out


class ConnectionTestForm(ConsoleForm):
    """The fields of the provider form a connection test reads (nothing is saved)."""

    provider_type = forms.ChoiceField(required=False, choices=[("", ""), *ProviderType.choices])
    preset = forms.ChoiceField(required=False, choices=[("", ""), *[(name, name) for name in PRESETS]])
    base_url = forms.CharField(max_length=500, required=False)
    api_key = forms.CharField(max_length=MAX_KEY_CHARS, required=False, strip=True)
    extra_headers = forms.CharField(required=False)
    options = forms.CharField(required=False)

    def clean_extra_headers(self) -> dict[str, str]:
        return parse_headers(self.cleaned_data.get("extra_headers") or "")

    def clean_options(self) -> dict[str, Any] | None:
        return parse_options(self.cleaned_data.get("options") or "")


# --- models -----------------------------------------------------------------------------------------


class ModelFilterForm(ConsoleForm):
    q = forms.CharField(required=False, max_length=200, label="Search",
                        widget=forms.TextInput(attrs={"type": "search", "placeholder": "model id or name"}))
    provider = forms.ChoiceField(required=False, choices=[("", "All providers")])
    tools = forms.BooleanField(required=False, label="Tools")
    vision = forms.BooleanField(required=False, label="Vision")
    embedding = forms.BooleanField(required=False, label="Embeddings")
    enabled = forms.ChoiceField(required=False, label="Status", choices=[
        ("", "Any"), ("on", "Usable by this tenant"), ("off", "Not enabled"),
    ])
    stale = forms.BooleanField(required=False, label="Include stale")

    def __init__(self, data=None, *, providers):
        super().__init__(data)
        self.fields["provider"].choices = [("", "All providers"), *[(p.name, p.name) for p in providers]]


# --- aliases ----------------------------------------------------------------------------------------


MAX_FALLBACKS = AliasIn().fields["context_window_fallbacks"].max_length
MAX_FALLBACK_NAME = AliasIn().fields["context_window_fallbacks"].child.max_length


def fallbacks_clean(text: str) -> list[str]:
    """A fallbacks field: names separated by commas (or new lines), in order, blanks ignored."""
    names = [name.strip() for name in text.replace("\n", ",").split(",") if name.strip()]
    if len(names) > MAX_FALLBACKS:
        raise forms.ValidationError(f"Name at most {MAX_FALLBACKS} fallbacks ({len(names)} given).")
    for name in names:
        if len(name) > MAX_FALLBACK_NAME:
            raise forms.ValidationError(f"'{name[:40]}…' is longer than {MAX_FALLBACK_NAME} characters.")
    return names


def _fallbacks_field(label: str, error: str) -> forms.CharField:
    return forms.CharField(
        required=False, label=label, widget=forms.TextInput(attrs={"class": "mono", "autocomplete": "off"}),
        help_text=f"Aliases or models (provider:model), separated by commas, tried in order when a request fails "
        f"with {error} (the alias's other deployments would refuse it too), e.g. long-context, openai:gpt-4.1. "
        "Empty: the error goes back to the client.",
    )


class AliasForm(ConsoleForm):
    name = forms.CharField(max_length=100, help_text="What clients send as model, e.g. smart-cheap.")
    project = forms.ChoiceField(
        required=False, label="Project",
        help_text="Empty: tenant-wide, every key may send it. A project: only that project's keys may, and for "
        "them it takes the place of a tenant-wide alias of the same name.",
    )
    description = forms.CharField(max_length=300, required=False)
    strategy = forms.ChoiceField(
        required=False, choices=RoutingStrategy.choices, initial=RoutingStrategy.WEIGHTED,
        help_text="How the deployments that share a group split its traffic. Weighted random follows their "
        "weights; the others prefer the one with the fewest requests in flight, the lowest recent latency, the "
        "most rpm / tpm headroom this minute, or the lowest price.",
    )
    session_affinity = forms.BooleanField(
        required=False, label="Session affinity",
        help_text="Keep one session's requests (x-tollgate-session header, metadata.user_id or user) on one "
        "deployment while it is usable, so providers' prompt caches hit.",
    )
    context_window_fallbacks = _fallbacks_field("Context-window fallbacks", "a prompt too long for the model")
    content_policy_fallbacks = _fallbacks_field("Content-policy fallbacks", "a content-policy refusal")
    retries = forms.IntegerField(initial=1, widget=number_input("1"), help_text="Retries per deployment on "
                                 "retryable failures (429, 5xx, timeouts).", **api_bounds(AliasIn, "retries"))
    timeout_seconds = forms.FloatField(required=False, label="Timeout per attempt (seconds)",
                                       widget=number_input("0.5"), help_text="Empty: the provider's timeout.",
                                       **api_bounds(AliasIn, "timeout_seconds"))
    allowed_fails = forms.IntegerField(initial=3, label="Allowed failures", widget=number_input("1"),
                                       help_text="Failures of one deployment before it cools down.",
                                       **api_bounds(AliasIn, "allowed_fails"))
    cooldown_seconds = forms.IntegerField(initial=60, label="Cooldown (seconds)", widget=number_input("1"),
                                          **api_bounds(AliasIn, "cooldown_seconds"))

    SETTINGS = ("description", "strategy", "session_affinity", "context_window_fallbacks", "content_policy_fallbacks",
                "retries", "timeout_seconds", "allowed_fails", "cooldown_seconds")
    FALLBACKS = ("context_window_fallbacks", "content_policy_fallbacks")

    def __init__(self, *args, projects=(), tenant_wide: bool = True, **kwargs):
        """``tenant_wide`` False (a project admin): the alias must be in one of ``projects``."""
        super().__init__(*args, **kwargs)
        choices = [(p.slug, f"{p.name} ({p.slug})") for p in projects]
        self.fields["project"].choices = [("", "— tenant-wide —"), *choices] if tenant_wide else choices
        if not tenant_wide:
            self.fields["project"].required = True
            self.fields["project"].help_text = ("One of the projects you administer: only that project's keys may "
                                                "send it, and for them it takes the place of a tenant-wide alias of "
                                                "the same name.")

    @classmethod
    def initial_of(cls, alias) -> dict[str, Any]:
        """The form's initial values for a saved alias (fallbacks as one comma-separated line)."""
        initial = {"name": alias.name, "project": alias.project.slug if alias.project_id else "",
                   **{f: getattr(alias, f) for f in cls.SETTINGS}}
        for f in cls.FALLBACKS:
            initial[f] = ", ".join(initial[f] or [])
        return initial

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not ALIAS_NAME_RE.match(name):
            raise forms.ValidationError(
                "Use letters, digits, '.', '_' or '-' (no ':', which marks provider:model ids)."
            )
        return name

    def clean_strategy(self) -> str:
        return self.cleaned_data.get("strategy") or RoutingStrategy.WEIGHTED

    def clean_context_window_fallbacks(self) -> list[str]:
        return fallbacks_clean(self.cleaned_data.get("context_window_fallbacks") or "")

    def clean_content_policy_fallbacks(self) -> list[str]:
        return fallbacks_clean(self.cleaned_data.get("content_policy_fallbacks") or "")


class TargetForm(ConsoleForm):
    model = forms.ChoiceField(required=True, label="Model")
    priority = forms.IntegerField(required=False, label="Group", widget=number_input("1"),
                                  **api_bounds(AliasTargetIn, "priority"))
    weight = forms.IntegerField(required=False, widget=number_input("1", placeholder="1"),
                                **api_bounds(AliasTargetIn, "weight"))
    rpm_limit = forms.IntegerField(required=False, label="RPM limit", widget=number_input("1"),
                                   **api_bounds(AliasTargetIn, "rpm_limit"))
    tpm_limit = forms.IntegerField(required=False, label="TPM limit", widget=number_input("1"),
                                   **api_bounds(AliasTargetIn, "tpm_limit"))
    temperature = forms.FloatField(required=False, widget=number_input("0.05"),
                                   **api_bounds(OverridesIn, "temperature"))
    max_tokens = forms.IntegerField(required=False, label="Max tokens", widget=number_input("1"),
                                    **api_bounds(OverridesIn, "max_tokens"))
    top_p = forms.FloatField(required=False, label="Top p", widget=number_input("0.05"),
                             **api_bounds(OverridesIn, "top_p"))

    DEPLOYMENT = ("priority", "weight", "rpm_limit", "tpm_limit")  # blank: the API's default

    def __init__(self, *args, model_choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [("", "Choose a model…"), *model_choices]

    def overrides(self) -> dict[str, Any]:
        return {k: self.cleaned_data[k] for k in ("temperature", "max_tokens", "top_p")
                if self.cleaned_data.get(k) is not None}

    def deployment(self) -> dict[str, Any]:
        return {k: self.cleaned_data[k] for k in self.DEPLOYMENT if self.cleaned_data.get(k) is not None}


class BaseTargetFormSet(forms.BaseFormSet):
    def add_fields(self, form, index):
        """Number the empty rows too (Django numbers only the saved ones), so renumbering one
        row does not send the untouched ones to the end."""
        super().add_fields(form, index)
        if index is not None and form.fields["ORDER"].initial is None:
            form.fields["ORDER"].initial = index + 1

    def clean(self):
        if any(self.errors):
            return
        chosen = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")
                  and f.cleaned_data.get("model")]
        if not chosen:
            raise forms.ValidationError("Add at least one deployment: the model the alias sends requests to first.")


MAX_TARGETS = 20  # as the REST API (AliasIn.targets max_length)
TargetFormSet = forms.formset_factory(
    TargetForm, formset=BaseTargetFormSet, extra=2, can_order=True, can_delete=True, max_num=MAX_TARGETS,
    validate_max=True,
)


def target_initial(target) -> dict[str, Any]:
    """A saved deployment as a row of the formset. A group equal to the row's position is left
    blank (as it was most likely given), so moving the row moves it in the chain."""
    pm = target.provider_model
    return {"model": f"{pm.provider.name}:{pm.model_id}", "ORDER": target.position + 1,
            "priority": None if target.priority == target.position else target.priority,
            "weight": target.weight, "rpm_limit": target.rpm_limit, "tpm_limit": target.tpm_limit,
            **(target.overrides or {})}


def targets_from(formset) -> list[dict[str, Any]]:
    """The formset's deployments in the chosen order (ORDER ascending, then as listed)."""
    return [{"model": f.cleaned_data["model"], "overrides": f.overrides(), **f.deployment()}
            for f in formset.ordered_forms if f.cleaned_data.get("model")]
