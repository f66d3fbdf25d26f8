"""The Django admin's cost columns: each tenant's known cost this month on the tenant list, and
its cost this month per model and per project on the tenant page. The owning app's admin knows nothing of costs;
this module re-registers Tenant with a subclass of its ModelAdmin that adds them, so tenants
never imports billing or support."""

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.utils.html import format_html, format_html_join

from core.money import usd
from support.selectors import month_costs, month_costs_by_model, month_costs_by_project
from tenants.admin import TenantAdmin
from tenants.models import Tenant


class TenantChangeList(ChangeList):
    """Adds each listed tenant's cost this month, for the whole page in one rollup query."""

    def get_results(self, request):
        super().get_results(request)
        tenants = list(self.result_list)
        costs = month_costs(tenants)
        for tenant in tenants:
            tenant.cost_this_month = costs.get(tenant.pk)


def _after(names, anchor: str, name: str) -> list[str]:
    names = list(names)
    names.insert(names.index(anchor) + 1, name)
    return names


class TenantCostAdmin(TenantAdmin):
    list_display = _after(TenantAdmin.list_display, "is_active", "cost_month")
    readonly_fields = [*TenantAdmin.readonly_fields, "cost_month_by_model", "cost_month_by_project"]

    def get_changelist(self, request, **kwargs):
        return TenantChangeList

    @admin.display(description="cost this month")
    def cost_month(self, obj: Tenant) -> str:
        cost = getattr(obj, "cost_this_month", None)
        if cost is None:  # outside the change list (no precomputed value): one query
            cost = month_costs([obj]).get(obj.pk)
        return usd(cost)

    @admin.display(description="cost this month by model")
    def cost_month_by_model(self, obj: Tenant) -> str:
        if obj.pk is None:
            return "–"
        return _cost_table(obj, month_costs_by_model(obj), css="cost-by-model", heading="Model")

    @admin.display(description="cost this month by project")
    def cost_month_by_project(self, obj: Tenant) -> str:
        if obj.pk is None:
            return "–"
        return _cost_table(obj, month_costs_by_project(obj), css="cost-by-project", heading="Project")


def _cost_table(tenant: Tenant, rows, *, css: str, heading: str) -> str:
    if not rows:
        return "No usage this month."
    total = sum((r.cost for r in rows), 0)
    body = format_html_join(
        "", '<tr><td>{}</td><td style="text-align:right">{}</td><td style="text-align:right">{}</td></tr>',
        ((r.label, f"{r.requests:,}", usd(r.cost)) for r in rows),
    )
    return format_html(
        '<table class="{}"><thead><tr><th>{}</th><th>Requests</th><th>Cost (known, USD)</th>'
        '</tr></thead><tbody>{}</tbody><tfoot><tr><th>Total ({})</th><th style="text-align:right">{}</th>'
        '<th style="text-align:right">{}</th></tr></tfoot></table>',
        css, heading, body, tenant.timezone, f"{sum(r.requests for r in rows):,}", usd(total),
    )


admin.site.unregister(Tenant)
admin.site.register(Tenant, TenantCostAdmin)
