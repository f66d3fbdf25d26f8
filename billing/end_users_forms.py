"""Forms of the console's end-users page: the top list's filters and the block form. The
rules (what an end user may look like, who may block where) live in billing.end_users and the
view; these parse the page's inputs."""

from django import forms

from billing.end_users import DEFAULT_PERIOD, MAX_END_USER, MAX_REASON, PERIODS
from core.forms import ConsoleForm


class EndUserFilterForm(ConsoleForm):
    period = forms.ChoiceField(required=False, choices=list(PERIODS.items()), initial=DEFAULT_PERIOD)
    project = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Project")
    search = forms.CharField(required=False, max_length=MAX_END_USER, label="End user contains",
                             widget=forms.TextInput(attrs={"type": "search"}))

    def __init__(self, data=None, *, projects):
        super().__init__(data)
        self.fields["project"].choices = [("", "All projects"), *[(str(p.pk), f"{p.name} ({p.slug})")
                                                                   for p in projects]]

    def clean_period(self) -> str:
        return self.cleaned_data.get("period") or DEFAULT_PERIOD


class EndUserBlockForm(ConsoleForm):
    """``project`` empty: every project of the tenant."""

    end_user = forms.CharField(required=False, max_length=MAX_END_USER, strip=False, label="End user",
                               help_text=f"As your app sends it (x-tollgate-end-user, user or metadata.user_id; "
                               f"at most {MAX_END_USER} characters).")
    project = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Blocked in")
    reason = forms.CharField(required=False, max_length=MAX_REASON, label="Reason")

    def __init__(self, data=None, *, projects, every_project: bool = True):
        """``every_project`` False (a project admin): the block must be in one of ``projects``."""
        super().__init__(data)
        choices = [(str(p.pk), f"project {p.slug}") for p in projects]
        self.fields["project"].choices = [("", "every project"), *choices] if every_project else choices
        self.fields["project"].required = not every_project
