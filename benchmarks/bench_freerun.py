"""Free-running RTL co-simulation vs driving the same array from Python on every clock edge."""

from __future__ import annotations

import numpy as np
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.golden import gemm_golden, random_operands
from hwloop.sim.systolic.mapping import Gemm, default_mapping
from hwloop.sim.systolic.rtl import RtlSimulator

DESIGNS = (
    SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32, ifmap_kib=4,
                   weight_kib=4, acc_kib=4, mem_latency=3),
    SystolicParams(rows=8, cols=8),
)


def _measure(params: SystolicParams, gemm: Gemm, *, step: bool) -> tuple[int, float, bool]:
    rng = np.random.default_rng(7)
    a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
    sim = RtlSimulator(params)
    sim.build()
    run = sim.run([(gemm, default_mapping(params, gemm), a, b)], step=step)[0]
    exact = bool(np.array_equal(run.c, gemm_golden(a, b, acc_bits=params.acc_bits)))
    return run.cycles, run.sim_s, exact


def run() -> str:
    lines = [
        "## Free-running RTL vs cycle-by-cycle cocotb",
        "",
        "Same Verilator build, same testbench. *Free-running*: the clock runs inside Verilator",
        "(`always #5`, `--timing`) and Python sleeps until `done`. *Stepped*: a Python loop",
        "awaits every rising clock edge, peeks `done` and pokes an input. Simulated cycles per",
        "second of wall time of the job, including its memory load and result dump (goal:",
        "free-running >= 100x stepped). The machine is shared (2 cores, other jobs running).",
        "",
        "| design | GEMM (m x n x k) | mode | cycles | wall s | cycles/s | bit-exact |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    ratios = []
    for params in DESIGNS:
        small = Gemm(m=64, n=64, k=64) if params.rows > 2 else Gemm(m=32, n=32, k=32)
        large = Gemm(m=256, n=256, k=512) if params.rows > 2 else Gemm(m=96, n=96, k=512)
        c_step, s_step, ok_step = _measure(params, small, step=True)
        c_free, s_free, ok_free = _measure(params, large, step=False)
        rate_step, rate_free = c_step / s_step, c_free / s_free
        ratios.append((params.name, rate_free / rate_step))
        for g, mode, c, s, ok in ((small, "stepped", c_step, s_step, ok_step),
                                  (large, "free-running", c_free, s_free, ok_free)):
            lines.append(f"| {params.name} | {g.m} x {g.n} x {g.k} | {mode} | {c:,} | {s:.2f} | "
                         f"{c / s:,.0f} | {'yes' if ok else 'NO'} |")
    lines.append("")
    for name, ratio in ratios:
        verdict = "meets" if ratio >= 100 else "misses"
        lines.append(f"- {name}: free-running is **{ratio:,.0f}x** faster per simulated cycle "
                     f"({verdict} the 100x goal).")
    return "\n".join(lines) + "\n"
