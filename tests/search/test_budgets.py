"""Budgets are upper limits that a design may meet: only a metric above its limit is a
violation (value / limit > 1), and rescoring under other budgets uses the same rule."""

from __future__ import annotations

from hwloop.search.objective import PointResult, budget_violations, rescore


def test_a_metric_at_its_budget_is_within_it():
    metrics = {"area": 100.0, "cycles": 5.0, "edp": 7.0}
    assert budget_violations(metrics, {"area": 100.0, "cycles": 4.0}) == {"cycles": 1.25}
    assert budget_violations(metrics, {"area": 100.0, "cycles": 5.0, "edp": 7.0}) == {}
    assert budget_violations(metrics, {"area": 99.5}) == {"area": 100.0 / 99.5}


class _Space:
    objective = "edp"

    def __init__(self, budgets: dict[str, float]):
        self.budgets = budgets


def test_rescore_at_and_over_a_budget():
    measured = PointResult(point={"rows": 2}, status="ok", metrics={"area": 10.0, "edp": 3.0},
                           objective=3.0, feasible=True)
    at = rescore(_Space({"area": 10.0}), measured)
    assert (at.status, at.feasible, at.infeasible_kind, at.violations) == ("ok", True, None, {})
    over = rescore(_Space({"area": 8.0}), measured)
    assert (over.status, over.feasible, over.infeasible_kind) == \
        ("infeasible", False, "measured")
    assert over.violations == {"area": 1.25} and over.objective == 3.0
