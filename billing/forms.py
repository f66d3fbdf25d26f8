"""Forms of the console's budget, limit rule and usage pages. Budget and limit rule rules live in
the services (the same validation the REST API runs); these forms parse the page's inputs into
what the service takes and show the service's errors next to the field they name."""

from decimal import Decimal
from typing import Any

from django import forms

from billing.models import BudgetAction, BudgetPeriod, BudgetScope, UsageApi, UsageStatus
from billing.services import mask_url
from billing.usage_selectors import TIME_GROUPINGS
from core.forms import ConsoleForm


class TargetForm(ConsoleForm):
    """What a budget or limit rule applies to: scope, project, key and model (billing/targets.py)."""

    scope = forms.ChoiceField(choices=BudgetScope.choices, initial=BudgetScope.TENANT)
    project = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Project",
                                     help_text="For the project scope, or the project whose end users the end-user "
                                               "scope covers (empty: every end user of the tenant).")
    api_key = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="API key",
                                     help_text="For the key scope.")
    model = forms.CharField(required=False, max_length=255, label="Only model",
                            widget=forms.TextInput(attrs={"list": "model-names", "autocomplete": "off"}),
                            help_text="An alias, provider:model or bare model id; empty: every model.")

    def target_choices(self, *, keys, projects, current=None) -> None:
        """The active keys (and the current one, even revoked) and the projects to choose from."""
        self.fields["api_key"].choices = [("", "—"), *[
            (str(k.pk), f"{k.name} ({k.masked})") for k in keys
            if k.status == "active" or (current is not None and k.pk == current.api_key_id)]]
        self.fields["project"].choices = [("", "—"), *[(str(p.pk), f"{p.name} ({p.slug})") for p in projects]]

    def target_data(self) -> dict[str, Any]:
        """The target as the service takes it: only what the scope uses."""
        data = self.cleaned_data
        return {"scope": data["scope"], "model": data["model"].strip(),
                "api_key": data["api_key"] if data["scope"] == BudgetScope.KEY else None,
                "project": data["project"] if data["scope"] in (BudgetScope.PROJECT, BudgetScope.END_USER) else None}


class BudgetForm(TargetForm):
    name = forms.CharField(max_length=100, help_text="e.g. 'Monthly' or 'Support bot'.")
    amount = forms.DecimalField(max_digits=20, decimal_places=6, min_value=Decimal("0.000001"),
                                label="Amount (USD per period)", widget=forms.NumberInput(attrs={"step": "any"}))
    period = forms.ChoiceField(choices=BudgetPeriod.choices, initial=BudgetPeriod.MONTH,
                               help_text="Counted in the tenant's time zone.")
    thresholds = forms.CharField(max_length=100, initial="50, 80, 100", label="Alert thresholds (%)",
                                 help_text="Whole percents separated by commas, e.g. 50, 80, 100.")
    action = forms.ChoiceField(choices=BudgetAction.choices, initial=BudgetAction.ALERT, label="At 100 %")
    downgrade_alias = forms.ChoiceField(required=False, label="Downgrade to alias",
                                        help_text="Only for the 'route to a cheaper alias' action.")
    webhook_url = forms.CharField(max_length=500, required=False, label="Webhook URL",
                                  widget=forms.URLInput(attrs={"autocomplete": "off",
                                                               "placeholder": "https://hooks.slack.com/…"}),
                                  help_text="Alerts are also POSTed here. Write-only: it is never shown again.")
    clear_webhook = forms.BooleanField(required=False, label="Remove the saved webhook")
    enabled = forms.BooleanField(required=False, initial=True)

    FIELDS = ("name", "scope", "project", "api_key", "model", "amount", "period", "thresholds", "action",
              "downgrade_alias", "enabled")

    def __init__(self, data=None, *, keys, aliases, projects, budget=None):
        self.budget = budget
        initial = None
        if budget is not None:
            initial = {f: getattr(budget, f) for f in self.FIELDS if f not in ("api_key", "project", "thresholds")}
            initial["api_key"] = budget.api_key_id
            initial["project"] = budget.project_id
            initial["thresholds"] = ", ".join(str(t) for t in budget.thresholds)
        super().__init__(data, initial=initial)
        self.target_choices(keys=keys, projects=projects, current=budget)
        self.fields["downgrade_alias"].choices = [("", "—"), *[(a.name, a.name) for a in aliases]]
        self.webhook_hint = mask_url(budget.webhook_url) if budget is not None else ""
        if budget is None or not budget.webhook_url:
            del self.fields["clear_webhook"]

    def clean_thresholds(self) -> list[int]:
        text = self.cleaned_data["thresholds"]
        values = []
        for part in text.replace(";", ",").split(","):
            part = part.strip().rstrip("%").strip()
            if not part:
                continue
            if not part.isdigit():
                raise forms.ValidationError(f"'{part}' is not a whole percent; write e.g. 50, 80, 100.")
            values.append(int(part))
        if not values:
            raise forms.ValidationError("Give at least one threshold, e.g. 50, 80, 100.")
        return values

    def service_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        out = {"name": data["name"], "amount": data["amount"], "period": data["period"],
               "thresholds": data["thresholds"], "action": data["action"], "enabled": data["enabled"],
               **self.target_data()}
        if data["action"] == BudgetAction.DOWNGRADE:
            out["downgrade_alias"] = data["downgrade_alias"] or ""
        if data["webhook_url"].strip():
            out["webhook_url"] = data["webhook_url"].strip()
        elif data.get("clear_webhook"):
            out["webhook_url"] = ""
        return out


class LimitRuleForm(TargetForm):
    requests_per_minute = forms.IntegerField(required=False, min_value=1, label="Requests per minute",
                                             widget=forms.NumberInput(attrs={"step": "1"}))
    tokens_per_minute = forms.IntegerField(required=False, min_value=1, label="Tokens per minute",
                                           widget=forms.NumberInput(attrs={"step": "1"}))
    tokens_per_day = forms.IntegerField(required=False, min_value=1, label="Tokens per day",
                                        widget=forms.NumberInput(attrs={"step": "1"}),
                                        help_text="Empty limits are not set; at least one is needed.")
    enabled = forms.BooleanField(required=False, initial=True)

    FIELDS = ("scope", "project", "api_key", "model", "requests_per_minute", "tokens_per_minute", "tokens_per_day",
              "enabled")

    def __init__(self, data=None, *, keys, projects, rule=None):
        initial = None
        if rule is not None:
            initial = {f: getattr(rule, f) for f in self.FIELDS if f not in ("api_key", "project")}
            initial.update(api_key=rule.api_key_id, project=rule.project_id)
        super().__init__(data, initial=initial)
        self.target_choices(keys=keys, projects=projects, current=rule)

    def service_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {**self.target_data(), "enabled": data["enabled"],
                **{f: data[f] for f in ("requests_per_minute", "tokens_per_minute", "tokens_per_day")}}


class UsageFilterForm(ConsoleForm):
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="Both days included. Default: the last 30 days.")
    model = forms.CharField(required=False, max_length=400,
                            help_text="An alias or provider:model, as asked or as answered.")
    provider = forms.ChoiceField(required=False, choices=[("", "All providers")])
    key = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="API key")
    project = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Project")
    status = forms.MultipleChoiceField(required=False, choices=UsageStatus.choices,
                                       widget=forms.CheckboxSelectMultiple)
    conversation = forms.CharField(required=False, max_length=128, label="Conversation id")
    api = forms.MultipleChoiceField(required=False, choices=UsageApi.choices, widget=forms.CheckboxSelectMultiple,
                                    label="API", help_text="The /v1 door the requests came through.")
    view = forms.ChoiceField(required=False, choices=[(g, g.capitalize() + "ly" if g != "day" else "Daily")
                                                      for g in TIME_GROUPINGS], label="Totals per")
    by = forms.ChoiceField(required=False, label="Breakdown by", choices=[
        ("model", "Model"), ("provider", "Provider"), ("key", "API key"), ("conversation", "Conversation"),
        ("api", "API"), ("project", "Project"),
    ])

    def __init__(self, data=None, *, providers, keys, projects):
        super().__init__(data)
        names = sorted({p.name for p in providers})
        self.fields["provider"].choices = [("", "All providers"), *[(name, name) for name in names]]
        self.fields["key"].choices = [("", "All keys"), *[(str(k.pk), f"{k.name} ({k.masked})") for k in keys]]
        self.fields["project"].choices = [("", "All projects"), *[(str(p.pk), f"{p.name} ({p.slug})")
                                                                   for p in projects]]

    def clean_view(self) -> str:
        return self.cleaned_data.get("view") or "day"

    def clean_by(self) -> str:
        return self.cleaned_data.get("by") or "model"
