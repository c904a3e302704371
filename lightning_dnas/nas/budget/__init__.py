"""Budgets: land the exported network on the user's cost numbers in one fit (SPEC section 8).

``controller`` (the multipliers and the term to add each step), ``repair`` (the feasibility
step before export), ``measure`` (fast hard costs, the search space's floor).
"""

from .controller import BudgetController, BudgetError

__all__ = ["BudgetController", "BudgetError"]
