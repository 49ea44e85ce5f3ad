"""Free-running RTL co-simulation vs driving the same array from Python on every clock edge."""

from __future__ import annotations

import time
from dataclasses import dataclass

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

#: GEMMs per design: stepped runs tens of thousands of cycles, free-running about a million,
#: so that the job's load and dump (and the simulator start-up) are a few percent of the time.
GEMMS = {
    "systolic_2x3_os_i8a32": (Gemm(m=48, n=48, k=96), Gemm(m=96, n=96, k=512)),
    "systolic_8x8_os_i8a32": (Gemm(m=128, n=128, k=128), Gemm(m=256, n=256, k=1024)),
}


@dataclass
class Measured:
    cycles: int
    job_s: float      # load + run + dump, inside the simulator process
    run_s: float      # start .. done only
    process_s: float  # the whole simulator process (start-up, job, shutdown)
    host_s: float     # RtlSimulator.run: encode operands, simulator process, decode C
    exact: bool


def _measure(params: SystolicParams, gemm: Gemm, *, step: bool) -> Measured:
    rng = np.random.default_rng(7)
    a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
    sim = RtlSimulator(params)
    sim.build()
    began = time.perf_counter()
    run = sim.run([(gemm, default_mapping(params, gemm), a, b)], step=step)[0]
    host_s = time.perf_counter() - began
    exact = bool(np.array_equal(run.c, gemm_golden(a, b, acc_bits=params.acc_bits)))
    return Measured(cycles=run.cycles, job_s=run.sim_s, run_s=float(run.extra["run_s"]),
                    process_s=sim.process_s, host_s=host_s, exact=exact)


def run() -> str:
    lines = [
        "## Free-running RTL vs cycle-by-cycle cocotb",
        "",
        "Same Verilator build (`-O3 --x-assign fast --timing`, C++ at `-O2`), same testbench.",
        "*Free-running*: the clock runs inside Verilator (`always #5`, `--timing`) and Python",
        "sleeps until `done`. *Stepped*: a Python loop awaits every rising clock edge, peeks",
        "`done` and pokes an input. Rates are simulated cycles per wall second: *run* = start",
        "to done only; *job* = the job's `$readmemh` load + run + `$writememh` dump of the",
        "result rows; *host* = the whole `RtlSimulator.run` call (hex encode of operands,",
        "simulator process start-up and shutdown, job, decode of C). Goal: free-running >= 100x",
        "stepped per simulated cycle. Stepped GEMMs are smaller (the slow path), sized so",
        "load/dump stay a few percent of the job. The machine is shared (2 cores, other jobs).",
        "",
        "| design | GEMM (m x n x k) | mode | cycles | run s | job s | host s | "
        "cycles/s (run) | cycles/s (job) | cycles/s (host) | bit-exact |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ratios = []
    for params in DESIGNS:
        small, large = GEMMS[params.name]
        stepped = _measure(params, small, step=True)
        free = _measure(params, large, step=False)
        ratios.append((params.name, free.cycles / free.run_s / (stepped.cycles / stepped.run_s),
                       free.cycles / free.job_s / (stepped.cycles / stepped.job_s),
                       free.process_s - free.job_s))
        for g, mode, m in ((small, "stepped", stepped), (large, "free-running", free)):
            lines.append(
                f"| {params.name} | {g.m} x {g.n} x {g.k} | {mode} | {m.cycles:,} | "
                f"{m.run_s:.2f} | {m.job_s:.2f} | {m.host_s:.2f} | {m.cycles / m.run_s:,.0f} | "
                f"{m.cycles / m.job_s:,.0f} | {m.cycles / m.host_s:,.0f} | "
                f"{'yes' if m.exact else 'NO'} |")
    lines.append("")
    for name, run_ratio, job_ratio, startup in ratios:
        verdict = "meets" if run_ratio >= 100 else "misses"
        lines.append(f"- {name}: free-running is **{run_ratio:,.0f}x** faster per simulated "
                     f"cycle than stepped (run only; {job_ratio:,.0f}x per job) — {verdict} the "
                     f"100x goal. Simulator start-up + shutdown outside the job: "
                     f"{startup:.2f} s per `run()` call (shared by all its jobs).")
    lines += [
        "",
        "Before the harness/build fixes (commit 5cd32e4; free-running 8x8 on 256 x 256 x 512,",
        "2x3 on 96 x 96 x 512): 8x8 205k cycles/s per job, 2x3 812k; 5x and 7x stepped (then",
        "measured on smaller stepped GEMMs). The fixes: the harness's memory",
        "latency pipeline as plain registers (Verilator had queued every element of an",
        "unpacked-array shift), C++ at `-O2` instead of `-Os`, cocotb-written inputs",
        "registered, and a testbench that imports only cocotb (start-up 1.7 s -> 0.3 s).",
        "Breakdown and limits: docs/systolic-hw.md (Co-simulation).",
    ]
    return "\n".join(lines) + "\n"
