"""Budget admission alone, through the data plane's one admission script (gateway/state.py), for
tests of reservations and settlement: the script's budget answer as a list ([0]: admitted and
reserved)."""

from billing import spend
from gateway.state import Pick


def tenant_budget_plan(tenant_id: int, day, amount_nanos: int, action: str = "block") -> list[spend.ScopePlan]:
    """One tenant-scope budget of ``amount_nanos`` for the one day ``day``."""
    from decimal import Decimal

    budget = spend.BudgetInfo(1, "b", "tenant", None, Decimal(amount_nanos) / spend.NANOS, "day", action, "")
    return [spend.ScopePlan(spend.scope_id(tenant_id), [day], [(budget, 1)], resets_in=(60,))]


async def budget_admit(state, plans: list[spend.ScopePlan], *, reservation: int, request_id: str) -> list[int]:
    args = spend.budget_arguments(plans, reservation=reservation, downgrade_as_alert=False)
    admission = await state.admit(tenant_id=0, pick=Pick((), 0, False, request_id), versions=("*", "*"),
                                  budgets=args)
    return list(admission.budget) if admission.budget else [0]
