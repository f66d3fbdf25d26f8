"""What every console form shares: the base class (labels without a trailing colon), the number
widget, and bounds read from a REST serializer's field, so that a console form and the API
accept exactly the same values."""

from typing import Any

from django import forms


def api_bounds(serializer_class, name: str) -> dict[str, Any]:
    """min_value / max_value of one field of a REST serializer, as form field arguments."""
    field = serializer_class().fields[name]
    return {"min_value": field.min_value, "max_value": field.max_value}


class ConsoleForm(forms.Form):
    """Labels without a trailing colon (the layout sets them apart)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


def number_input(step: str = "any", **attrs) -> forms.NumberInput:
    return forms.NumberInput(attrs={"step": step, **attrs})
