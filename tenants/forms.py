"""Forms of the tenant console's tenant pages (the LLM settings form is shown by
providers.views.settings_page). The bounds are read from the REST API's serializers, so the
console and the API accept exactly the same values."""

import zoneinfo
from functools import lru_cache
from typing import Any

from django import forms
from django.conf import settings

from core.forms import ConsoleForm, api_bounds, number_input
from tenants.api import ApiKeyLimitsIn, CacheIn, DataIn, LimitsIn, LlmSettingsIn, ProjectIn, ProjectLimitsIn
from tenants.models import PROJECT_ROLE_CHOICES, KeyScope, OutagePolicy, Role, Tenant


@lru_cache(maxsize=1)
def timezone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class TenantSettingsForm(ConsoleForm):
    name = forms.CharField(max_length=200, label="Tenant name")
    timezone = forms.ChoiceField(
        label="Time zone", help_text="Days, months and budget periods are counted in this time zone."
    )
    default_model = forms.ChoiceField(
        required=False, label="Default model",
        help_text="Used when a request names no model. Pick an alias or an enabled model.",
    )
    default_embedding_model = forms.ChoiceField(
        required=False, label="Default embedding model",
        help_text="Used by /v1/embeddings when a request names no model.",
    )
    temperature = forms.FloatField(required=False, widget=number_input("0.05"),
                                   help_text="0 to 2. Empty: the model's own default.",
                                   **api_bounds(LlmSettingsIn, "temperature"))
    max_tokens = forms.IntegerField(required=False, label="Max tokens", widget=number_input("1"),
                                    help_text="At least 1. Empty: no default limit.",
                                    **api_bounds(LlmSettingsIn, "max_tokens"))
    top_p = forms.FloatField(required=False, label="Top p", widget=number_input("0.05"),
                             help_text="0 to 1. Empty: the model's own default.",
                             **api_bounds(LlmSettingsIn, "top_p"))
    requests_per_minute = forms.IntegerField(required=False, label="Requests per minute",
                                             widget=number_input("1"), help_text="At least 1. Empty: unlimited.",
                                             **api_bounds(LimitsIn, "requests_per_minute"))
    tokens_per_minute = forms.IntegerField(required=False, label="Tokens per minute", widget=number_input("1"),
                                           help_text="Input and output tokens. At least 1. Empty: unlimited.",
                                           **api_bounds(LimitsIn, "tokens_per_minute"))
    tokens_per_day = forms.IntegerField(required=False, label="Tokens per day", widget=number_input("1"),
                                        help_text="Input and output tokens a day (the tenant's time zone). At least 1. "
                                                  "Empty: unlimited.",
                                        **api_bounds(LimitsIn, "tokens_per_day"))
    redis_outage = forms.ChoiceField(
        required=False, choices=OutagePolicy.choices, label="While Redis is down",
        help_text="When the rate-limit and budget store is unreachable: refuse /v1 requests (503), or serve them "
        "without rate limits, their spend counted once it is back. A tenant with a block budget is always refused.",
    )
    cache_enabled = forms.BooleanField(required=False, label="Response cache on",
                                       help_text="Answers temperature-0 requests from the cache.")
    cache_ttl_seconds = forms.IntegerField(label="Cache lifetime (seconds)", widget=number_input("1"),
                                           **api_bounds(CacheIn, "ttl_seconds"))

    usage_retention_days = forms.IntegerField(required=False, label="Keep request rows (days)",
                                              widget=number_input("1"),
                                              **api_bounds(DataIn, "usage_retention_days"))

    FIELDS = ("name", "timezone", "default_model", "default_embedding_model", "temperature", "max_tokens", "top_p",
              "requests_per_minute", "tokens_per_minute", "tokens_per_day", "redis_outage", "cache_enabled",
              "cache_ttl_seconds", "usage_retention_days")

    def __init__(self, data=None, *, tenant: Tenant, models, aliases, embedding_models=()):
        initial = {name: getattr(tenant, name) for name in self.FIELDS}
        super().__init__(data, initial=initial)
        self.fields["timezone"].choices = timezone_choices()
        default_days = getattr(settings, "USAGE_RETENTION_DAYS", None)
        self.fields["usage_retention_days"].help_text = (
            "Older request rows are deleted; daily totals are kept. Empty: the platform default"
            + (f" ({default_days} days)." if default_days else ".")
        )
        choices = [("", "No default")]
        choices += [(a.name, f"alias {a.name}") for a in aliases]
        choices += [(f"{m.provider.name}:{m.model_id}", f"{m.provider.name}:{m.model_id}") for m in models]
        known = {value for value, _ in choices}
        # A default that is no longer available (a disabled model, a deleted alias) stays
        # selectable, so saving other settings does not force a change of model.
        self.missing_current = tenant.default_model if tenant.default_model not in known else ""
        if self.missing_current:
            choices.append((self.missing_current, f"{self.missing_current} (not available now)"))
        self.fields["default_model"].choices = choices
        embedding = [("", "None (a request must name its model)")]
        embedding += [(f"{m.provider.name}:{m.model_id}", f"{m.provider.name}:{m.model_id}")
                      for m in embedding_models]
        current = tenant.default_embedding_model
        if current and current not in {value for value, _ in embedding}:
            embedding.append((current, f"{current} (not available now)"))
        self.fields["default_embedding_model"].choices = embedding

    def changes(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["name"] = data["name"].strip()
        data["default_model"] = (data["default_model"] or "").strip()
        data["default_embedding_model"] = (data["default_embedding_model"] or "").strip()
        data["redis_outage"] = data["redis_outage"] or OutagePolicy.INHERIT
        return {name: data[name] for name in self.FIELDS}


class ApiKeyForm(ConsoleForm):
    name = forms.CharField(max_length=100, help_text="What uses the key, e.g. 'support bot (prod)'.")
    scope = forms.ChoiceField(choices=KeyScope.choices, initial=KeyScope.CHAT,
                              help_text="Chat keys work on /v1 only; admin keys also manage the tenant over /api.")
    expires_at = forms.DateTimeField(
        required=False, label="Expires", input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Optional, in the tenant's time zone. Empty: never expires.",
    )
    project = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Project",
                                     help_text="Usage is counted per project; the key stays in it. "
                                     "Empty: the default project.")

    def __init__(self, data=None, *, projects, project_only: bool = False):
        """``projects``: those a new key may go to. ``project_only``: the caller has roles on some
        projects only (a project admin): chat keys only, and the project must be named."""
        super().__init__(data)
        self.fields["project"].choices = [(str(p.pk), f"{p.name} ({p.slug})") for p in projects]
        default = next((p for p in projects if p.is_default), None)
        if default is not None:
            self.fields["project"].initial = str(default.pk)
        if project_only:
            self.fields["scope"].choices = [(KeyScope.CHAT.value, KeyScope.CHAT.label)]
            self.fields["scope"].help_text = ("Chat keys work on /v1 only. A project admin creates chat keys only: "
                                              "an admin key acts as an admin of the whole tenant.")
            self.fields["project"].required = True
            self.fields["project"].help_text = "One of the projects you administer; usage is counted there."
            if len(projects) == 1:
                self.fields["project"].initial = str(projects[0].pk)


class MemberAddForm(ConsoleForm):
    email = forms.EmailField(max_length=254, help_text="The user must already have a Tollgate login.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class MemberRoleForm(ConsoleForm):
    role = forms.ChoiceField(choices=Role.choices)



def _limit_fields(serializer_class, *, whose: str) -> dict[str, forms.IntegerField]:
    """Requests per minute, tokens per minute and per day, with the REST serializer's bounds."""
    return {
        "requests_per_minute": forms.IntegerField(
            required=False, label="Requests per minute", widget=number_input("1"),
            help_text=f"Across {whose}. At least 1. Empty: no limit of its own.",
            **api_bounds(serializer_class, "requests_per_minute")),
        "tokens_per_minute": forms.IntegerField(
            required=False, label="Tokens per minute", widget=number_input("1"),
            help_text="Input and output tokens. At least 1. Empty: no limit of its own.",
            **api_bounds(serializer_class, "tokens_per_minute")),
        "tokens_per_day": forms.IntegerField(
            required=False, label="Tokens per day", widget=number_input("1"),
            help_text="Input and output tokens a day (the tenant's time zone). At least 1. Empty: no limit of its "
                      "own.",
            **api_bounds(serializer_class, "tokens_per_day")),
    }


LIMIT_NAMES = ("requests_per_minute", "tokens_per_minute", "tokens_per_day")


class ProjectForm(ConsoleForm):
    """A project's name, default model and limits (``PATCH /api/projects/{project}``); the slug
    only when it is created (keys and usage name it)."""

    slug = forms.CharField(max_length=ProjectIn().fields["slug"].max_length,
                           help_text="Lowercase letters, digits and hyphens; fixed once created.")
    name = forms.CharField(max_length=200)
    default_model = forms.CharField(
        required=False, max_length=255, label="Default model",
        help_text="What a request of the project's keys without a model uses: a tenant-wide alias, one of the "
                  "project's aliases or a model the tenant may use. Empty: the tenant's default.")

    def __init__(self, data=None, *, project=None):
        initial = {}
        if project is not None:
            initial = {name: getattr(project, name) for name in ("name", "default_model", *LIMIT_NAMES)}
        super().__init__(data, initial=initial)
        self.fields.update(_limit_fields(ProjectLimitsIn, whose="the project's keys"))
        if project is not None:
            del self.fields["slug"]

    def changes(self) -> dict[str, Any]:
        """The service's fields (slug apart)."""
        return {name: self.cleaned_data[name] for name in ("name", "default_model", *LIMIT_NAMES)}


class ProjectMemberAddForm(ConsoleForm):
    email = forms.EmailField(max_length=254, help_text="The user must already have a Tollgate login and no role "
                             "in the whole tenant.")
    role = forms.ChoiceField(choices=PROJECT_ROLE_CHOICES, initial=Role.VIEWER)


class ProjectMemberRoleForm(ConsoleForm):
    role = forms.ChoiceField(choices=PROJECT_ROLE_CHOICES)


class ApiKeyLimitsForm(ConsoleForm):
    """A key's own limits (``PATCH /api/keys/{id}`` ``limits``); empty: none of its own."""

    def __init__(self, data=None, *, key):
        super().__init__(data, initial={name: getattr(key, name) for name in LIMIT_NAMES})
        self.fields.update(_limit_fields(ApiKeyLimitsIn, whose="this key's requests"))

    def changes(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in LIMIT_NAMES}
