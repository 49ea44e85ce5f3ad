"""evaluate_point: metrics summed over the workload set (area once), static and measured
infeasibility, budgets, JSON round trip, rescoring under other budgets."""

from __future__ import annotations

import json
import pickle

import pytest

from hwloop.hdl.systolic.params import SystolicParams
from hwloop.search.objective import PointResult, evaluate_point, rescore, static_check
from hwloop.search.space import parse_space
from hwloop.sim import evaluate
from hwloop.sim.systolic.mapping import Mapping
from hwloop.workloads import load_workload

SPACE = """
objective = "edp"
workloads = [{name = "mlp", first = 1}, {name = "dqn", first = 2}]
[hardware]
rows = 2
cols = 2
in_bits = { values = [8, 16] }
acc_bits = 24
ifmap_kib = { values = [1, 16] }
weight_kib = 16
acc_kib = 16
[mapping]
tile_m = { values = [2, 8], times = "rows" }
tile_n = 4
tile_k = { values = [32, 1024] }
order = "mnk"
[budgets]
area = BUDGET
"""

POINT = {"rows": 2, "cols": 2, "in_bits": 8, "acc_bits": 24, "ifmap_kib": 16,
         "weight_kib": 16, "acc_kib": 16, "tile_m": 2, "tile_n": 4, "tile_k": 32,
         "order": "mnk"}

pytestmark = pytest.mark.xdist_group("search_objective")


def test_metrics_are_summed_over_workloads_area_once() -> None:
    space = parse_space(SPACE.replace("BUDGET", "1e12"))
    result = evaluate_point(space, POINT, fidelity="model", seed=3)
    assert result.status == "ok" and result.feasible and result.infeasible_kind is None
    params = SystolicParams(rows=2, cols=2, acc_bits=24, ifmap_kib=16, weight_kib=16, acc_kib=16)
    mapping = Mapping(tile_m=4, tile_n=4, tile_k=32, order="mnk")
    parts = [evaluate(params, load_workload("mlp").select(first=1), mapping, fidelity="model"),
             evaluate(params, load_workload("dqn").select(first=2), mapping, fidelity="model")]
    assert result.metrics["cycles"] == sum(e.cycles for e in parts)
    assert result.metrics["energy_pj"] == pytest.approx(sum(e.energy_pj for e in parts))
    assert result.metrics["edp"] == pytest.approx(sum(e.edp for e in parts))
    assert result.metrics["area"] == parts[0].area == parts[1].area
    assert result.objective == result.metrics["edp"]
    assert set(result.workloads) == {"mlp", "dqn"}
    assert result.workloads["dqn"]["cycles"] == parts[1].cycles
    macs = sum(e.macs for e in parts)
    assert result.metrics["utilization"] == pytest.approx(macs / (4 * result.metrics["cycles"]))
    assert result.fidelity == "model" and result.seed == 3 and result.wall_s > 0

    # JSON-able and back
    again = PointResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result

    # the same measurement under a budget it exceeds
    tight = parse_space(SPACE.replace("BUDGET", str(result.metrics["area"] / 2)))
    judged = rescore(tight, result)
    assert judged.status == "infeasible" and judged.infeasible_kind == "measured"
    assert judged.violations == {"area": pytest.approx(2.0)} and not judged.feasible
    assert judged.objective == result.objective


def test_budget_exceeded_is_measured_infeasibility() -> None:
    space = parse_space(SPACE.replace("BUDGET", "1.0"))
    result = evaluate_point(space, POINT, fidelity="model")
    assert result.status == "infeasible" and result.infeasible_kind == "measured"
    assert not result.feasible and result.objective is not None and result.metrics
    assert set(result.violations) == {"area"} and result.violations["area"] > 1


def test_static_infeasibility_before_simulating() -> None:
    space = parse_space(SPACE.replace("BUDGET", "1e12"))
    too_big = {**POINT, "ifmap_kib": 1, "tile_m": 8, "tile_k": 1024}
    reason = static_check(space, too_big)
    assert reason is not None and "ifmap" in reason
    result = evaluate_point(space, too_big, fidelity="model")
    assert result.status == "infeasible" and result.infeasible_kind == "static"
    assert result.error == reason and result.metrics == {} and result.objective is None
    assert not result.feasible

    illegal = {**POINT, "in_bits": 16}  # acc_bits 24 < 2 x 16
    result = evaluate_point(space, illegal, fidelity="model")
    assert result.status == "infeasible" and result.infeasible_kind == "static"
    assert result.error == "acc_bits must be an integer in 32..64, not 24"


def test_space_pickles_without_loaded_workloads() -> None:
    space = parse_space(SPACE.replace("BUDGET", "1e12"))
    space.load_workloads()
    copy = pickle.loads(pickle.dumps(space))
    assert copy.hash == space.hash and copy._loaded_workloads == {}
    assert [w.name for w in copy.load_workloads()] == ["mlp", "dqn"]
