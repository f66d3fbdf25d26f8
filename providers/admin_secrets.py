"""Secret fields in the Django admin: shown as a hint, replaced by typing, never read back.

An admin lists its secret model fields in ``secret_fields``; :class:`SecretFieldsAdmin` then

* shows each as ``<field>_hint`` (``sk-…abcd``, ``https://hooks.slack.com/…9f2``, header
  names) on the change page and wherever a list or a read-only page would name the field;
* gives users who may change the object a write-only input named like the field (it starts
  empty and never renders a value: typed text replaces the stored value, empty keeps it) and a
  ``clear_<field>`` box that removes it;
* keeps the model form away from the field itself (excluded), so the stored value never
  reaches the form's initial data, and view-only users (support staff) get the hint alone.

The form's ``secret_changes()`` says what to store: the admin hands it to the service that
saves the object, which is also where a new value is validated.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.contrib import admin


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that, like ``PasswordInput(render_value=False)``, never renders its value."""

    def format_value(self, value):
        return None


@dataclass(frozen=True)
class Secret:
    """How the admin treats one secret model field."""

    label: str  # "API key": the hint's label; the input is "New API key"
    hint: Callable[[Any], str]  # the stored value -> what may be shown ("" when none)
    # typed text -> the value to store; raises forms.ValidationError
    parse: Callable[[str], Any] = field(default=lambda text: text)
    cleared: Any = ""  # what "remove" stores
    multiline: bool = False
    max_length: int = 4000
    help_text: str = ""


class SecretInputs:
    """Mixed into the admin's model form by :class:`SecretFieldsAdmin`."""

    secret_fields: dict[str, Secret] = {}

    def secret_changes(self) -> dict[str, Any]:
        """``{field: new value}`` for each secret typed or cleared; untouched ones are absent."""
        changes: dict[str, Any] = {}
        for name, secret in self.secret_fields.items():
            typed = self.cleaned_data.get(name)
            if typed:
                changes[name] = typed
            elif self.cleaned_data.get(f"clear_{name}"):
                changes[name] = secret.cleared
        return changes


def _input(secret: Secret) -> forms.Field:
    if secret.multiline:
        widget = WriteOnlyTextarea(attrs={"rows": 2, "autocomplete": "off"})
    else:
        widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
    help_text = " ".join(filter(None, [secret.help_text, "Leave empty to keep the stored value."]))
    return forms.CharField(required=False, strip=True, max_length=secret.max_length, widget=widget,
                           label=f"New {secret.label}", help_text=help_text)


def _parser(name: str, secret: Secret):
    def clean(form) -> Any:
        text = form.cleaned_data.get(name) or ""
        return secret.parse(text) if text else text

    return clean


def _hint(name: str, secret: Secret):
    @admin.display(description=secret.label)
    def hint(self, obj) -> str:
        return (secret.hint(getattr(obj, name)) if obj is not None and obj.pk else "") or "—"

    hint.__name__ = f"{name}_hint"
    return hint


class SecretFieldsAdmin(admin.ModelAdmin):
    """A ModelAdmin whose ``secret_fields`` are never shown; see the module docstring. Its
    ``save_model`` should pass ``form.secret_changes()`` to the service that saves."""

    secret_fields: dict[str, Secret] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.secret_fields:
            return
        attrs: dict[str, Any] = {"secret_fields": cls.secret_fields}
        for name, secret in cls.secret_fields.items():
            attrs[name] = _input(secret)
            attrs[f"clear_{name}"] = forms.BooleanField(
                required=False, label=f"Remove the stored {secret.label}")
            attrs[f"clean_{name}"] = _parser(name, secret)
            setattr(cls, f"{name}_hint", _hint(name, secret))
        bases = (cls.form,) if issubclass(cls.form, SecretInputs) else (SecretInputs, cls.form)
        cls.form = type(cls.form.__name__, bases, attrs)

    def _hints(self) -> list[str]:
        return [f"{name}_hint" for name in self.secret_fields]

    def get_exclude(self, request, obj=None):
        return [*(super().get_exclude(request, obj) or ()), *self.secret_fields]

    def get_readonly_fields(self, request, obj=None):
        fields = [f for f in super().get_readonly_fields(request, obj)
                  if f not in self.secret_fields]
        return [*fields, *self._hints()] if obj is not None else fields

    def get_fields(self, request, obj=None):
        inputs = {*self.secret_fields, *(f"clear_{name}" for name in self.secret_fields)}
        hints = self._hints()
        fields = [f for f in super().get_fields(request, obj) if f not in inputs and f not in hints]
        view_only = obj is not None and not self.has_change_permission(request, obj)
        # Each secret goes where its model field would be: after the closest field before it
        # in the model that the page shows (a secret before it: that one's last row).
        order = [f.name for f in self.model._meta.get_fields()]
        last_row: dict[str, str] = {}
        for name in self.secret_fields:
            if view_only:
                group = [f"{name}_hint"]  # the hint, never an input
            elif obj is not None:
                group = [f"{name}_hint", name, f"clear_{name}"]
            else:
                group = [name]
            earlier = [last_row.get(f, f) for f in order[:order.index(name)]]
            at = next((fields.index(f) + 1 for f in reversed(earlier) if f in fields), len(fields))
            fields[at:at] = group
            last_row[name] = group[-1]
        return fields

    def get_list_display(self, request):
        return [f"{f}_hint" if f in self.secret_fields else f
                for f in super().get_list_display(request)]

    def get_search_fields(self, request):
        return [f for f in super().get_search_fields(request)
                if f.lstrip("^=@") not in self.secret_fields]
