"""Cached re-evaluation vs cold evaluation: what the build cache saves.

Each evaluation runs in a fresh process (no in-memory memo) against a fresh, empty
``HWLOOP_CACHE``: the cold run generates the Verilog, builds it with Verilator, synthesizes it
with Yosys, chooses mappings and co-simulates. Then the same evaluation again, twice: with
``reuse=False`` it finds the Verilator build, the synthesis result and the mappings on disk and
only co-simulates; with ``reuse=True`` (the default) it also finds the finished per-layer results
of this exact evaluation (same design sources, layers, mappings, seed, tools) and simulates
nothing. Goal: re-evaluation <= 5% of cold.
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
r = evaluate(p, sys.argv[2], fidelity=sys.argv[3], first=int(sys.argv[4]), seed=3,
             reuse=sys.argv[5] == "1")
assert r.bit_exact in (True, None)
from hwloop.sim.evaluate import _design_fingerprint
print(json.dumps({"wall": r.wall, "cycles": r.cycles, "process_s": time.perf_counter() - start,
                  "design": _design_fingerprint()}))
"""

CASES = (
    ({"rows": 4, "cols": 4, "dataflow": "os"}, "dqn", "rtl", 3),
    ({"rows": 8, "cols": 8, "dataflow": "ws"}, "mlp", "rtl", 3),
    ({"rows": 8, "cols": 8, "dataflow": "os"}, "resnet50", "model", 54),
)


def _evaluate(cache: str, params: dict, workload: str, fidelity: str, first: int,
              reuse: bool) -> tuple[dict, float]:
    env = dict(os.environ, HWLOOP_CACHE=cache)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(params), workload, fidelity,
                           str(first), "1" if reuse else "0"],
                          env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def run() -> str:
    lines = [
        "## Build cache: cached re-evaluation vs cold evaluation",
        "",
        "Each run is a fresh process; the cache starts empty. *cold*: generate, Verilator "
        "build, Yosys, mapping choice, simulate. *builds cached* (`reuse=False`): the same "
        "evaluation again, finding build, synthesis and mappings on disk — it still "
        "co-simulates. *reused* (default `reuse=True`): the finished results of this exact "
        "evaluation are found too. Times are `evaluate()` wall inside the process (the process "
        "adds ~1 s of Python start-up and imports).",
        "",
        "| design | workload | fidelity | cold s | builds cached s | ratio | reused s | ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    built_ratios, reused_ratios = [], []
    for params, workload, fidelity, first in CASES:
        for _attempt in range(3):  # the sources may change under a shared working tree
            with tempfile.TemporaryDirectory(prefix="hwloop-bench-cache-") as cache:
                print(f"   {params} {workload} {fidelity}: cold", flush=True)
                cold, _ = _evaluate(cache, params, workload, fidelity, first, True)
                print(f"   {params} {workload} {fidelity}: builds cached", flush=True)
                built, _ = _evaluate(cache, params, workload, fidelity, first, False)
                print(f"   {params} {workload} {fidelity}: reused", flush=True)
                reused, _ = _evaluate(cache, params, workload, fidelity, first, True)
            if cold["design"] == built["design"] == reused["design"]:
                break
            print("   the design sources changed during the case: again", flush=True)
        assert cold["cycles"] == built["cycles"] == reused["cycles"]
        c, b, r = (x["wall"]["total_s"] for x in (cold, built, reused))
        built_ratios.append(b / c)
        reused_ratios.append(r / c)
        name = f"{params['rows']}x{params['cols']} {params['dataflow']}"
        lines.append(f"| {name} | {workload} (first {first}) | {fidelity} | {c:.2f} | {b:.3f} | "
                     f"{b / c:.1%} | {r:.3f} | {r / c:.1%} |")
    lines += [
        "",
        f"Goal: re-evaluation <= 5% of cold. Reused results: worst {max(reused_ratios):.1%} "
        f"({'**met**' if max(reused_ratios) <= 0.05 else '**not met**'}). Builds cached but "
        f"simulated again: worst {max(built_ratios):.1%} "
        f"({'**met**' if max(built_ratios) <= 0.05 else '**not met**'}; what remains is the "
        "co-simulation itself and the cocotb start-up).",
    ]
    return "\n".join(lines)
