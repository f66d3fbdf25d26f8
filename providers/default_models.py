"""The default models and what they name: the tenant's default model and default embeddings model,
and each project's default model. A default is checked when it is set (providers.services), and a
change that would leave one naming nothing is refused (409, naming it): deleting, renaming or moving
an alias it names (alias_dependents), and disabling or deleting a model or provider it names
directly, "provider:model" or a bare id (defaults_lost). A catalog sync that drops a model cannot be
refused; defaults_dangling lists what then names nothing, for the console's settings page."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from core.errors import Conflict
from providers.models import ModelMode, ProviderModel
from providers.selectors import UsableNames, names_usable
from tenants.models import Project, Tenant

# The fields of a default model: (on the tenant, on its projects) -> the mode of model it names.
MODES = {"default_model": ModelMode.CHAT, "default_embedding_model": ModelMode.EMBEDDING}
HOW_TO_CHANGE = ("the tenant's: its settings (PUT /api/tenants/{id} or the console's settings page); a project's "
                 "default_model: PATCH /api/projects/{slug} or the console's project page")


@dataclass(frozen=True)
class DefaultRef:
    """One default model: the tenant's (``project`` None) or a project's, and its field."""

    tenant: Tenant
    project: Project | None
    field: str  # "default_model" or "default_embedding_model" (the tenant's only)

    @property
    def name(self) -> str:
        return getattr(self.project or self.tenant, self.field)

    @property
    def mode(self) -> str:
        return MODES[self.field]

    def label(self, *, tenant: bool = False, name: bool = False) -> str:
        """How a message names it: "the tenant's default model (its settings)", "the default model of
        project 'web'"; with the tenant's slug in front (``tenant``) and what it names (``name``)."""
        if self.project is not None:
            text = f"the default model of project '{self.project.slug}'"
        else:
            which = "default embeddings model" if self.field == "default_embedding_model" else "default model"
            text = f"the tenant's {which} (its settings)"
        if name:
            text = f"{text}, '{self.name}'"
        return f"tenant '{self.tenant.slug}': {text}" if tenant else text


def defaults_naming(*, names: Iterable[str], tenant: Tenant | None = None) -> list[DefaultRef]:
    """The defaults (of ``tenant``, else of every tenant) whose value is one of ``names``."""
    names = set(names)
    tenants = Tenant.objects.filter(Q(default_model__in=names) | Q(default_embedding_model__in=names))
    projects = Project.objects.filter(default_model__in=names).select_related("tenant")
    if tenant is not None:
        tenants, projects = tenants.filter(pk=tenant.pk), projects.filter(tenant=tenant)
    found = [DefaultRef(t, None, f) for t in tenants.order_by("slug") for f in MODES if getattr(t, f) in names]
    return found + [DefaultRef(p.tenant, p, "default_model") for p in projects.order_by("tenant__slug", "slug")]


def _answers_directly(usable: UsableNames, ref: DefaultRef) -> bool:
    """Whether ``ref`` names a model (not an alias) its keys may use, of its mode."""
    return ref.name not in usable.aliases and ref.mode in usable.models.get(ref.name, frozenset())


def defaults_lost(*, models: QuerySet[ProviderModel], tenant: Tenant | None = None) -> list[DefaultRef]:
    """The defaults that name one of ``models`` directly and would name nothing without them: they
    answer now and would not once those models are disabled or gone (a bare id another provider
    also offers still answers). ``tenant``: its defaults only (its choice of a platform model, or
    its own provider); else every tenant's (a platform provider or model)."""
    rows = list(models.select_related("provider"))
    names = {n for m in rows for n in (f"{m.provider.name}:{m.model_id}", m.model_id)}
    refs = defaults_naming(names=names, tenant=tenant) if rows else []
    gone = Q(pk__in=[m.pk for m in rows])
    seen: dict[tuple[int, int | None], tuple[UsableNames, UsableNames]] = {}
    lost = []
    for ref in refs:
        scope = (ref.tenant.pk, ref.project.pk if ref.project is not None else None)
        if scope not in seen:
            seen[scope] = (names_usable(tenant=ref.tenant, project_id=scope[1]),
                           names_usable(tenant=ref.tenant, project_id=scope[1], excluding=gone))
        now, after = seen[scope]
        if _answers_directly(now, ref) and not _answers_directly(after, ref):
            lost.append(ref)
    return lost


def defaults_lost_refusal(what: str, refs: list[DefaultRef], *, doing: str, field: str | None = None) -> Conflict:
    """The refusal of a change to ``what`` (e.g. "Model 'up:alpha'") that would leave ``refs``
    (defaults_lost) naming nothing; the tenants are named when there are several."""
    several = len({r.tenant.pk for r in refs}) > 1
    named = " and ".join(r.label(tenant=several, name=True) for r in refs)
    them = "it" if len(refs) == 1 else "them"
    return Conflict(
        f"{what} is still named by {named}; {doing} would leave {them} naming nothing. Set {them} to another "
        f"alias or model first ({HOW_TO_CHANGE}), then try again.", field=field)


def defaults_dangling(*, tenant: Tenant) -> list[DefaultRef]:
    """The tenant's defaults that name nothing its keys may use now (a model a catalog sync found
    gone, or one changed behind the services' back): a request that relies on one gets the usual
    404 naming what is available, and the console's settings page warns."""
    refs = [DefaultRef(tenant, None, f) for f in MODES if getattr(tenant, f)]
    refs += [DefaultRef(tenant, p, "default_model")
             for p in Project.objects.filter(tenant=tenant).exclude(default_model="").order_by("slug")]
    usable: dict[int | None, UsableNames] = {}
    dangling = []
    for ref in refs:
        scope = ref.project.pk if ref.project is not None else None
        if scope not in usable:
            usable[scope] = names_usable(tenant=tenant, project_id=scope)
        if ref.mode not in (usable[scope].modes(ref.name) or frozenset()):
            dangling.append(ref)
    return dangling
