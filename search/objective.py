"""The one function sweep workers run: evaluate a point of a space over its workload set.

:func:`evaluate_point` is top-level and takes only picklable arguments, so a process pool or a
Dask worker can run it. It never raises for a design that cannot be built as asked (illegal
parameters, a mapping that does not fit): that is a result, ``status="infeasible"`` with
``infeasible_kind="static"``. A design that runs but exceeds a budget is
``infeasible_kind="measured"``, with its metrics. ``"failed"`` and ``"timeout"`` are set by the
evaluation engine (hwloop.search.engine) when the evaluation itself breaks.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from hwloop.errors import ParameterError

STATUSES = ("ok", "infeasible", "failed", "timeout")
INFEASIBLE_KINDS = ("static", "measured")
#: Metrics that belong to the design, not to a workload: counted once, not summed.
DESIGN_METRICS = ("area", "area_cells", "sram_bits")


@dataclass
class PointResult:
    point: dict[str, Any]
    status: str  # ok | infeasible | failed | timeout
    infeasible_kind: str | None = None  # static | measured (status "infeasible" only)
    metrics: dict[str, float] = field(default_factory=dict)  # summed over workloads
    objective: float | None = None  # the space's objective metric (None if not measured)
    feasible: bool = False
    violations: dict[str, float] = field(default_factory=dict)  # metric -> value / budget
    workloads: dict[str, dict[str, float]] = field(default_factory=dict)  # per workload
    error: str | None = None  # why: the ParameterError, the exception, the timeout
    fidelity: str = "model"
    seed: int = 0
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. log_path, tool versions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PointResult:
        return cls(**data)

    @property
    def measured(self) -> bool:
        """Whether metrics (and the objective) were measured: ok or over budget."""
        return self.objective is not None and self.status in ("ok", "infeasible")


def budget_violations(metrics: dict[str, float], budgets: dict[str, float]) -> dict[str, float]:
    """Budgets exceeded: metric → value / limit (> 1)."""
    return {name: metrics[name] / limit for name, limit in budgets.items()
            if metrics[name] > limit}


def rescore(space: Any, result: PointResult) -> PointResult:
    """The same measurement judged under ``space``'s objective and budgets (e.g. a result
    from another sweep, for transfer). Static infeasibility and failures carry over."""
    if not result.metrics or result.status in ("failed", "timeout") or (
            result.infeasible_kind == "static"):
        return PointResult(**{**result.to_dict(), "feasible": False})
    violations = budget_violations(result.metrics, space.budgets)
    feasible = not violations
    return PointResult(**{
        **result.to_dict(),
        "objective": float(result.metrics[space.objective]),
        "violations": violations,
        "feasible": feasible,
        "status": "ok" if feasible else "infeasible",
        "infeasible_kind": None if feasible else "measured",
    })


def static_check(space: Any, point: dict[str, Any]) -> str | None:
    """Why a point is statically infeasible (illegal parameters, a mapping that does not fit
    a layer), or None. Cheap: no simulation."""
    try:
        params, mapping = space.split(point)
        from hwloop.sim import check_design

        for workload in space.load_workloads():
            check_design(params, workload, mapping)
    except ParameterError as exc:
        return str(exc)
    return None


def evaluate_point(space: Any, point: dict[str, Any], *, fidelity: str | None = None,
                   seed: int = 0) -> PointResult:
    """Evaluate ``point`` on every workload of ``space`` (metrics summed; area once)."""
    start = time.perf_counter()
    fidelity = fidelity or space.fidelity
    point = space.normalize(point)

    def done(**kwargs: Any) -> PointResult:
        return PointResult(point=point, fidelity=fidelity, seed=seed,
                           wall_s=time.perf_counter() - start, **kwargs)

    reason = static_check(space, point)
    if reason is not None:
        return done(status="infeasible", infeasible_kind="static", error=reason)
    from hwloop.sim import evaluate

    params, mapping = space.split(point)
    per_workload: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    macs = 0
    for spec, workload in zip(space.workloads, space.load_workloads(), strict=True):
        try:
            evaluation = evaluate(params, workload, mapping, fidelity=fidelity, seed=seed)
        except ParameterError as exc:  # infeasibility that check_design did not foresee
            return done(status="infeasible", infeasible_kind="static", error=str(exc))
        metrics = evaluation.metrics()
        per_workload[spec.name] = metrics
        macs += int(getattr(evaluation, "macs", 0))
        for name, value in metrics.items():
            if name == "utilization":
                continue
            if name in DESIGN_METRICS:
                totals[name] = value
            else:
                totals[name] = totals.get(name, 0.0) + value
    cycles = totals.get("cycles", 0.0)
    pes = params.rows * params.cols
    totals["utilization"] = macs / (pes * cycles) if cycles and macs else 0.0
    objective = float(totals[space.objective])
    if not math.isfinite(objective):
        return done(status="failed", metrics=totals, workloads=per_workload,
                    error=f"objective {space.objective} is not finite: {objective}")
    violations = budget_violations(totals, space.budgets)
    feasible = not violations
    return done(status="ok" if feasible else "infeasible",
                infeasible_kind=None if feasible else "measured", metrics=totals,
                objective=objective, feasible=feasible, violations=violations,
                workloads=per_workload)
