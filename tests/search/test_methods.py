"""Search methods on a cheap synthetic objective with a known constrained optimum, and the
ask/tell protocol (batches, pending points, determinism, exhaustion, transfer)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from hwloop.errors import ParameterError
from hwloop.search.methods import METHODS, make_optimizer
from hwloop.search.objective import PointResult, budget_violations
from hwloop.search.space import Space, parse_space

SPACE = """
name = "synthetic"
objective = "edp"
workloads = ["mlp"]
[hardware]
rows = { min = 2, max = 32, log = true }
cols = { min = 2, max = 32, log = true }
dataflow = { values = ["os", "ws"] }
ifmap_kib = { min = 4, max = 256, log = true }
weight_kib = { min = 4, max = 256, log = true }
bus_bytes = { min = 4, max = 64, log = true }
[budgets]
area = AREA
"""


def synthetic_space(area: float) -> Space:
    return parse_space(SPACE.replace("AREA", repr(area)), path="synthetic.toml")


def synthetic_metrics(p: dict[str, Any]) -> dict[str, float]:
    """A roofline-like accelerator: compute vs memory time, buffers trading traffic for
    area and access energy, the dataflow favouring one buffer."""
    pes = p["rows"] * p["cols"]
    ws = p["dataflow"] == "ws"
    work = 2.0e7
    compute = work / pes * (1 + 0.005 * (p["rows"] + p["cols"])) * (1.1 if ws else 1.0)
    traffic = (work / 64 * (1 + (96 if ws else 48) / p["ifmap_kib"])
               * (1 + (32 if ws else 96) / p["weight_kib"]))
    memory = traffic / p["bus_bytes"]
    cycles = max(compute, memory) + 0.2 * min(compute, memory)
    energy = (0.3 * work + 40 * traffic
              + 0.0125 * work * (math.sqrt(p["ifmap_kib"]) + math.sqrt(p["weight_kib"])))
    area = pes * 1500 + (p["ifmap_kib"] + p["weight_kib"]) * 1200 + p["bus_bytes"] * 2000
    return {"cycles": cycles, "energy_pj": energy, "edp": cycles * energy, "area": area,
            "area_cells": pes * 1000.0, "sram_bits": 8192.0 * (p["ifmap_kib"] + p["weight_kib"])}


def synthetic_static(p: dict[str, Any]) -> str | None:
    if p["ifmap_kib"] * 8 < p["rows"] * p["cols"]:
        return f"ifmap_kib={p['ifmap_kib']} is too small for a {p['rows']}x{p['cols']} tile"
    return None


def synthetic_result(space: Space, point: dict[str, Any]) -> PointResult:
    reason = synthetic_static(point)
    if reason:
        return PointResult(point=point, status="infeasible", infeasible_kind="static",
                           error=reason)
    metrics = synthetic_metrics(point)
    violations = budget_violations(metrics, space.budgets)
    return PointResult(point=point, status="infeasible" if violations else "ok",
                       infeasible_kind="measured" if violations else None, metrics=metrics,
                       objective=metrics[space.objective], feasible=not violations,
                       violations=violations)


def optimum(space: Space) -> float:
    return min(r.objective for p in space.enumerate()
               if (r := synthetic_result(space, p)).feasible)


def options(method: str) -> dict[str, Any]:
    # The synthetic objective has its own static check (the real one needs real workloads).
    return {"static_checker": synthetic_static} if method in ("cbo", "apollo") else {}


def sweep(space: Space, method: str, seed: int, evals: int, batch: int = 4,
          **kwargs: Any) -> list[PointResult]:
    opt = make_optimizer(method, space, seed=seed, **options(method), **kwargs)
    results: list[PointResult] = []
    while len(results) < evals:
        points = opt.ask(min(batch, evals - len(results)))
        told = [synthetic_result(space, p) for p in points]
        opt.tell(points, told)
        results += told
    return results


def best_ratio(results: list[PointResult], best: float) -> float:
    return min((r.objective for r in results if r.feasible), default=math.inf) / best


EVALS = 40


@pytest.fixture(scope="module")
def loose() -> tuple[Space, float, float]:
    space = synthetic_space(1.5e6)
    best = optimum(space)
    random_median = float(np.median([best_ratio(sweep(space, "random", s, EVALS), best)
                                     for s in range(7)]))
    print(f"random: median best/optimum after {EVALS} evaluations = {random_median:.3f}")
    return space, best, random_median


@pytest.mark.parametrize("method", ["bo", "optuna-tpe", "cbo", "apollo"])
def test_method_beats_random(loose: tuple[Space, float, float], method: str) -> None:
    space, best, random_median = loose
    ratios = [best_ratio(sweep(space, method, s, EVALS), best) for s in range(3)]
    print(f"{method}: best/optimum after {EVALS} evaluations per seed = {ratios}")
    assert float(np.median(ratios)) < random_median


def test_constrained_methods_find_tight_optimum_and_avoid_infeasible() -> None:
    # The optimum sits on the area boundary; the penalty baseline (bo) wanders.
    space = synthetic_space(6e5)
    best = optimum(space)
    for method in ("cbo", "apollo"):
        runs = [sweep(space, method, s, 60) for s in range(3)]
        ratios = [best_ratio(r, best) for r in runs]
        late_infeasible = np.mean([sum(not x.feasible for x in r[20:]) / 40 for r in runs])
        print(f"{method}: best/optimum {ratios}, infeasible after 20 evals {late_infeasible:.2f}")
        assert float(np.median(ratios)) <= 1.05
        assert late_infeasible < 0.3
        # the static check keeps statically infeasible points out after the start
        assert all(x.infeasible_kind != "static" for r in runs for x in r)


@pytest.mark.parametrize("method", list(METHODS))
def test_ask_tell_protocol(method: str) -> None:
    space = parse_space('workloads = ["mlp"]\n[hardware]\nrows = { values = [2, 4, 8] }\n'
                        'cols = { values = [2, 4] }\ndataflow = { values = ["os", "ws"] }\n'
                        'bus_bytes = { values = [8, 16] }\n[budgets]\narea = 1e5\n')
    kwargs = {"static_checker": None} if method in ("cbo", "apollo") else {}

    def result(p: dict[str, Any]) -> PointResult:
        area = p["rows"] * p["cols"] * 5000.0 + p["bus_bytes"] * 100
        cycles = 1e6 / (p["rows"] * p["cols"]) * (1.2 if p["dataflow"] == "ws" else 1.0)
        metrics = {"cycles": cycles, "energy_pj": 1e3 * area / 1e4, "edp": cycles * area,
                   "area": area, "area_cells": area, "sram_bits": 0.0}
        v = budget_violations(metrics, space.budgets)
        return PointResult(point=p, status="infeasible" if v else "ok",
                           infeasible_kind="measured" if v else None, metrics=metrics,
                           objective=metrics["edp"], feasible=not v, violations=v)

    def run(seed: int) -> list[dict[str, Any]]:
        opt = make_optimizer(method, space, seed=seed, **kwargs)
        seen: list[dict[str, Any]] = []
        first = opt.ask(3)
        second = opt.ask(2)  # asked while the first three are pending
        assert len(first) == 3 and len(second) == 2
        keys = {space.key(p) for p in first + second}
        assert len(keys) == 5
        opt.tell(first, [result(p) for p in first])
        seen += first
        pending = second
        while True:
            batch = opt.ask(4)
            if not batch:
                break
            assert not {space.key(p) for p in batch} & {space.key(p) for p in seen + pending}
            opt.tell(pending, [result(p) for p in pending])
            seen += pending
            pending = batch
        opt.tell(pending, [result(p) for p in pending])
        seen += pending
        assert len(seen) == space.size == len({space.key(p) for p in seen})
        assert opt.ask(2) == []
        best = opt.best()
        assert best is not None and best[1].feasible
        return seen

    assert run(5) == run(5)  # deterministic given the seed


def test_make_optimizer_and_tell_errors() -> None:
    space = synthetic_space(1e6)
    with pytest.raises(ParameterError, match=r"^unknown search method 'sa' \(known: random, bo, "
                                             r"cbo, apollo, optuna-tpe\)$"):
        make_optimizer("sa", space)
    opt = make_optimizer("random", space, seed=0)
    points = opt.ask(2)
    with pytest.raises(ParameterError, match="^tell got 2 points and 1 results$"):
        opt.tell(points, [synthetic_result(space, points[0])])
    with pytest.raises(ParameterError, match="^ask needs n >= 1, not 0$"):
        opt.ask(0)
    with pytest.raises(ParameterError, match=r"^seed must be a non-negative integer, not -1$"):
        make_optimizer("apollo", space, seed=-1)


def test_apollo_transfer_proposes_the_warm_best_first() -> None:
    source = synthetic_space(1.5e6)
    target = synthetic_space(6e5)
    history = sweep(source, "apollo", 1, 40)
    warm = [(r.point, r) for r in history]
    opt = make_optimizer("apollo", target, seed=0, warm_start=warm,
                         static_checker=synthetic_static)
    first = opt.ask(2)
    # judged under the target's tighter budget, the best feasible warm points come first
    feasible = sorted((r for r in history if synthetic_metrics(r.point)["area"] <= 6e5),
                      key=lambda r: r.objective)
    assert first == [feasible[0].point, feasible[1].point]
    warm_runs = [best_ratio(sweep(target, "apollo", s, 20, warm_start=warm), optimum(target))
                 for s in range(2)]
    cold_runs = [best_ratio(sweep(target, "apollo", s, 20), optimum(target)) for s in range(2)]
    print(f"apollo after 20 evaluations: warm {warm_runs}, cold {cold_runs}")
    assert max(warm_runs) <= max(cold_runs)
