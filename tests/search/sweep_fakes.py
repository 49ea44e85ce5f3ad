"""Fake evaluators for the sweep engine tests (importable by worker subprocesses).

Each has the signature of ``hwloop.search.objective.evaluate_point``; what it does is chosen
by the point: ``mode`` = ok | fail | hang | crash | noisy; ``x`` sets the objective.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hwloop.errors import BuildError


def result_for(point: dict[str, Any], *, fidelity: str, seed: int) -> dict[str, Any]:
    x = float(sum(v for v in point.values() if isinstance(v, int | float)))
    objective = (x - 3.0) ** 2 + 1.0
    return {
        "point": dict(point), "status": "ok", "infeasible_kind": None,
        "metrics": {"cycles": objective * 100, "area": 10.0 + x, "edp": objective * 7,
                    "energy_pj": 7.0},
        "objective": objective, "feasible": True, "fidelity": fidelity, "seed": seed,
    }


def fake_evaluate(space: Any, point: dict[str, Any], *, fidelity: str, seed: int) -> dict:
    mode = point.get("mode", "ok")
    if mode == "fail":
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"fake-build-{os.getpid()}.log"
        log.write_text("%Error: fake build failure\n")
        raise BuildError("Verilator build failed (fake)", log_path=log)
    if mode == "hang":
        # a hung simulator child: it must die with the worker's process group
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        Path(point["pidfile"]).write_text(str(child.pid))
        child.wait()
    if mode == "crash":
        os._exit(3)
    if mode == "noisy":
        print("chatter on stdout that must not corrupt the reply pipe")
    if "sleep" in point:
        time.sleep(float(point["sleep"]))
    return result_for({k: v for k, v in point.items() if k not in ("mode", "pidfile", "sleep")},
                      fidelity=fidelity, seed=seed)


def space_evaluate(space: Any, point: dict[str, Any], *, fidelity: str, seed: int) -> dict:
    """``fake_evaluate``, and the budgets of the space the worker was given."""
    return {**fake_evaluate(space, point, fidelity=fidelity, seed=seed),
            "budgets": dict(space.budgets)}


def slow_evaluate(space: Any, point: dict[str, Any], *, fidelity: str, seed: int) -> dict:
    """A real-space point evaluated by a cheap synthetic formula, slowly (for kill -9 tests)."""
    time.sleep(float(os.environ.get("HWLOOP_FAKE_SLEEP", "0.3")))
    return result_for(point, fidelity=fidelity, seed=seed)


def flaky_evaluate(space: Any, point: dict[str, Any], *, fidelity: str, seed: int) -> dict:
    """A real-space point: a failed build for 4x8 arrays, a hung simulation for 4x2 ones."""
    if point.get("rows") == 4 and point.get("cols") == 8:
        raise BuildError("Verilator build failed (fake)", log_path=Path("/tmp/fake-build.log"))
    if point.get("rows") == 4 and point.get("cols") == 2:
        time.sleep(3600)
    time.sleep(float(os.environ.get("HWLOOP_FAKE_SLEEP", "0")))
    return result_for(point, fidelity=fidelity, seed=seed)
