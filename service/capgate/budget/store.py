"""The ``BudgetStore`` protocol: check and reserve a decision's budgets in one step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from capgate.decision.model import BudgetSpec, BudgetStatus, Cost

Unit = Literal["calls", "usd_micros", "tokens"]


@dataclass(frozen=True, slots=True)
class Overrun:
    """The budget, and the unit in it, that one more call would exceed."""

    budget: BudgetSpec
    unit: Unit


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """Outcome of one check: usage after it, or the overrun that refused it."""

    statuses: tuple[BudgetStatus, ...] = ()
    overrun: Overrun | None = None


class BudgetStore(Protocol):
    async def check_and_reserve(
        self,
        *,
        tenant_id: str,
        run_id: str,
        budgets: Sequence[BudgetSpec],
        cost: Cost,
        reserve: bool,
    ) -> BudgetCheck:
        """Check every budget for one more call of ``cost``; if all fit and ``reserve``,
        record the call in all of them atomically, else record nothing.

        Raises:
            BudgetStoreUnavailable: the store did not answer within its deadline.
            PolicyError: a budget this store cannot enforce (fail closed).
        """
        ...

    async def connect(self) -> None:
        """Warm up before serving; never raises (decisions fail closed meanwhile)."""
        ...

    async def aclose(self) -> None: ...
