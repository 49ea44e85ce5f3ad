"""Cached re-evaluation vs cold evaluation: what the build cache saves.

Each evaluation runs in a fresh process (no in-memory memo) against a fresh, empty
``HWLOOP_CACHE``: the cold run generates the Verilog, builds it with Verilator, synthesizes it
with Yosys and co-simulates; the re-evaluation of the same design finds the Verilator build and
the synthesis result on disk and only co-simulates. Goal: re-evaluation <= 5% of cold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

SCRIPT = """
import json, sys, time
start = time.perf_counter()
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim import evaluate
p = SystolicParams(**json.loads(sys.argv[1]))
r = evaluate(p, sys.argv[2], fidelity=sys.argv[3], first=int(sys.argv[4]), seed=3)
assert r.bit_exact in (True, None)
print(json.dumps({"wall": r.wall, "cycles": r.cycles, "process_s": time.perf_counter() - start}))
"""

CASES = (
    ({"rows": 4, "cols": 4, "dataflow": "os"}, "dqn", "rtl", 3),
    ({"rows": 8, "cols": 8, "dataflow": "ws"}, "mlp", "rtl", 3),
    ({"rows": 8, "cols": 8, "dataflow": "os"}, "resnet50", "model", 54),
)


def _evaluate(cache: str, params: dict, workload: str, fidelity: str, first: int
              ) -> tuple[dict, float]:
    env = dict(os.environ, HWLOOP_CACHE=cache)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(params), workload, fidelity,
                           str(first)], env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def run() -> str:
    lines = [
        "## Build cache: cached re-evaluation vs cold evaluation",
        "",
        "Each run is a fresh process on a fresh `HWLOOP_CACHE`; the second run re-evaluates the "
        "same design (same parameters, same workload layers) and finds the Verilator build and "
        "the Yosys result in the cache. `evaluate()` wall = inside the process; process wall "
        "adds Python start-up and imports.",
        "",
        "| design | workload | fidelity | cold evaluate s | cached evaluate s | ratio | "
        "cold process s | cached process s | process ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for params, workload, fidelity, first in CASES:
        with tempfile.TemporaryDirectory(prefix="hwloop-bench-cache-") as cache:
            print(f"   {params} {workload} {fidelity}: cold", flush=True)
            cold, cold_wall = _evaluate(cache, params, workload, fidelity, first)
            print(f"   {params} {workload} {fidelity}: cached", flush=True)
            warm, warm_wall = _evaluate(cache, params, workload, fidelity, first)
        assert cold["cycles"] == warm["cycles"]
        ratio = warm["wall"]["total_s"] / cold["wall"]["total_s"]
        ratios.append(ratio)
        name = f"{params['rows']}x{params['cols']} {params['dataflow']}"
        lines.append(
            f"| {name} | {workload} (first {first}) | {fidelity} | "
            f"{cold['wall']['total_s']:.2f} | {warm['wall']['total_s']:.3f} | {ratio:.1%} | "
            f"{cold_wall:.1f} | {warm_wall:.1f} | {warm_wall / cold_wall:.1%} |")
    lines += [
        "",
        f"Goal: cached re-evaluation <= 5% of cold: worst ratio {max(ratios):.1%} "
        f"({'**met**' if max(ratios) <= 0.05 else '**not met**'} for evaluate() wall time).",
    ]
    return "\n".join(lines)
