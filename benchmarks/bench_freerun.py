"""Benchmark 1 of the accelerator: free-running RTL vs driving the same array cycle by cycle.

Three ways to compute the same GEMM on the same design, all checked bit-exact:

- *free-running*: the whole accelerator (controller, scratchpads, DMA, external memory model)
  runs in Verilator with its own clock; Python sleeps from ``start`` to ``done``
  (:class:`RtlSimulator`);
- *minimal stepped loop*: the same accelerator build, but Python wakes up on every rising edge,
  peeks ``done`` and pokes one input: the floor of any per-cycle Python approach;
- *per-cycle mesh drive*: the accelerator's PE array alone, fed from cocotb on every clock
  (operands and flags; ws also the weight rows) with its output rows collected and summed in
  Python, tiled like the accelerator (benchmarks/mesh_drive.py): what "driving the same array
  cycle by cycle from cocotb" means.

Both dataflows: the 2x3, 4x4 and 8x8 os designs and the 4x4 and 8x8 ws designs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from benchmarks.mesh_drive import MeshDrive
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.golden import gemm_golden, random_operands
from hwloop.sim.systolic.mapping import Gemm, default_mapping
from hwloop.sim.systolic.rtl import RtlSimulator

DESIGNS = (
    SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32, ifmap_kib=4,
                   weight_kib=4, acc_kib=4, mem_latency=3),
    SystolicParams(rows=4, cols=4),
    SystolicParams(rows=8, cols=8),
    SystolicParams(rows=4, cols=4, dataflow="ws"),
    SystolicParams(rows=8, cols=8, dataflow="ws"),
)

#: Per design: the GEMM all three modes compute (about 200k array cycles: the per-cycle modes
#: take seconds) and a larger one (about a million cycles) for the free-running rate, so that
#: its load, dump and start-up are a few percent of the time.
GEMMS = {
    "systolic_2x3_os_i8a32": (Gemm(m=96, n=96, k=128), Gemm(m=96, n=96, k=512)),
    "systolic_4x4_os_i8a32": (Gemm(m=128, n=128, k=192), Gemm(m=256, n=256, k=256)),
    "systolic_8x8_os_i8a32": (Gemm(m=256, n=256, k=192), Gemm(m=256, n=256, k=1024)),
    "systolic_4x4_ws_i8a32": (Gemm(m=128, n=128, k=192), Gemm(m=256, n=256, k=256)),
    "systolic_8x8_ws_i8a32": (Gemm(m=256, n=256, k=192), Gemm(m=256, n=256, k=1024)),
}
SEED = 7
#: Each measurement is the fastest of this many runs (the machine is shared; the minimum is the
#: least disturbed run); every run is checked bit-exact.
REPEATS = 5
#: Cycles of the mesh build running free with idle inputs (the same binary as the mesh drive).
IDLE_CYCLES = 1_000_000


@dataclass
class Measured:
    mode: str
    gemm: Gemm | None  # None: no GEMM (idle inputs)
    cycles: int
    run_s: float   # the simulated part only (start .. done; the mesh drive's per-cycle loop)
    job_s: float   # the job inside the simulator process (+ load and dump / job file and result)
    host_s: float  # the whole Python call: operand encoding, simulator process, decoding C
    exact: bool

    @property
    def rate(self) -> float:
        return self.cycles / self.run_s


def _operands(params: SystolicParams, gemm: Gemm) -> tuple[np.ndarray, np.ndarray]:
    return random_operands(gemm, in_bits=params.in_bits, rng=np.random.default_rng(SEED))


def _best(measure, *args, **kwargs) -> Measured:
    runs = [measure(*args, **kwargs) for _ in range(REPEATS)]
    best = min(runs, key=lambda m: m.run_s)
    best.exact = all(m.exact for m in runs)
    return best


def _accelerator(sim: RtlSimulator, gemm: Gemm, *, step: bool) -> Measured:
    params = sim.params
    a, b = _operands(params, gemm)
    mapping = default_mapping(params, gemm)  # the mapping search is not simulation (as in _mesh)
    began = time.perf_counter()
    run = sim.run([(gemm, mapping, a, b)], step=step)[0]
    host_s = time.perf_counter() - began
    return Measured(mode="minimal stepped loop" if step else "free-running", gemm=gemm,
                    cycles=run.cycles, run_s=float(run.extra["run_s"]), job_s=run.sim_s,
                    host_s=host_s,
                    exact=bool(np.array_equal(run.c, gemm_golden(a, b,
                                                                 acc_bits=params.acc_bits))))


def _mesh(drive: MeshDrive, gemm: Gemm, *, style: str) -> Measured:
    params = drive.params
    a, b = _operands(params, gemm)
    run = drive.run(gemm, a, b, style=style)
    mode = "per-cycle mesh drive" + (", driver + monitor" if style == "tasks" else "")
    return Measured(mode=mode, gemm=gemm, cycles=run.cycles, run_s=run.run_s,
                    job_s=run.job_s, host_s=run.host_s,
                    exact=bool(np.array_equal(run.c, gemm_golden(a, b,
                                                                 acc_bits=params.acc_bits))))


def _idle(drive: MeshDrive, cycles: int) -> Measured:
    run = drive.idle(cycles)
    return Measured(mode="mesh build running free (idle inputs)", gemm=None,
                    cycles=run.cycles, run_s=run.run_s, job_s=run.job_s, host_s=run.host_s,
                    exact=True)


def _gemm(g: Gemm | None) -> str:
    return "none (idle)" if g is None else f"{g.m} x {g.n} x {g.k}"


def run() -> str:
    rows: list[tuple[str, Measured]] = []
    summary: list[tuple[str, Measured, Measured, Measured, Measured, Measured, Measured]] = []
    for params in DESIGNS:
        shared, large = GEMMS[params.name]
        sim = RtlSimulator(params)
        sim.build()
        drive = MeshDrive(params)
        drive.build()
        free_large = _best(_accelerator, sim, large, step=False)
        free = _best(_accelerator, sim, shared, step=False)
        stepped = _best(_accelerator, sim, shared, step=True)
        mesh = _best(_mesh, drive, shared, style="loop")
        mesh_tasks = _best(_mesh, drive, shared, style="tasks")
        mesh_free = _best(_idle, drive, IDLE_CYCLES)
        rows += [(params.name, m) for m in (free_large, free, mesh, mesh_tasks, stepped,
                                            mesh_free)]
        summary.append((params.name, free_large, free, stepped, mesh, mesh_tasks, mesh_free))

    lines = [
        "## Free-running RTL vs cycle-by-cycle cocotb",
        "",
        "The same GEMM computed three ways on the same design, every result bit-exact against",
        "the golden model (random int8 operands, seed 7):",
        "",
        "- **free-running**: the whole accelerator (controller, scratchpads, DMA, external",
        "  memory model) in Verilator, clocked by the simulator's C++ main",
        "  (sim/clocked_main.cpp); Python loads the memories, pulses `start` and sleeps until",
        "  `done`.",
        "- **per-cycle mesh drive** (benchmarks/mesh_drive.py): the accelerator's PE array",
        "  (`OsMesh` or `WsMesh`, same parameters, same Verilator flags) as its own top, driven",
        "  from one cocotb coroutine on every clock: per cycle it pokes a row of A and the",
        "  flags (os: a row of B and `valid`/`first`/`last`; ws: `valid`/`switch`, and in each",
        "  array tile's window of `rows` cycles a row of the next tile's weights), awaits the",
        "  edge and reads `early`; announced output rows are read and summed into C in Python",
        "  (the K tiles' partial sums). Array tiles and their order are the accelerator's (same",
        "  mapping); os tiles are spaced as its feeder spaces them, ws tiles last at least",
        "  `rows + cols - 1` cycles (the weight window inside the tile; on these GEMMs the",
        "  accelerator's period too: its array tiles are 16 (4x4) and 32 (8x8) rows of A).",
        "  This is the issue's \"driving the",
        "  same array cycle by cycle from cocotb\", and a lean one: one coroutine, operands",
        "  packed once per tile, no driver/monitor objects. *Driver + monitor*: the same with",
        "  the outputs sampled by a second coroutine, the usual cocotb structure.",
        "- **minimal stepped loop**: the accelerator build again, but Python wakes up on every",
        "  rising edge, peeks `done` and pokes one input. Nothing useful happens in Python: it",
        "  is the floor of any per-cycle Python approach, not a testbench.",
        "- **mesh build running free**: the mesh drive's own binary, clocked for",
        f"  {IDLE_CYCLES:,} cycles with idle inputs while Python sleeps: the same array, the",
        "  same build, with and without Python on every cycle (the array evaluates the same",
        "  logic whether its operands are zero or not). No result, so no bit-exact check.",
        "",
        "Rates are simulated cycles per wall second of the simulated part (*run*: start..done,",
        "or the mesh drive's per-cycle loop). *job* adds the job's bulk load and C dump (mesh",
        "drive: reading the job file); *host* is the whole Python call (operand encoding,",
        "simulator process start-up and shutdown, decoding C; not the mapping search). The",
        "mesh drive's cycles are",
        "array cycles only; the accelerator's include its DMA, so the fair per-GEMM comparison",
        f"is wall time for the same GEMM. Each row is the fastest of {REPEATS} runs (all",
        "bit-exact); builds are cached and not counted. The machine is shared (2 cores,",
        "other jobs running), so rates vary by tens of percent between runs.",
        "",
        "| design | mode | GEMM (m x n x k) | cycles | run s | job s | host s | "
        "cycles/s (run) | bit-exact |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, m in rows:
        lines.append(f"| {name} | {m.mode} | {_gemm(m.gemm)} | {m.cycles:,} | {m.run_s:.2f} | "
                     f"{m.job_s:.2f} | {m.host_s:.2f} | {m.rate:,.0f} | "
                     f"{('yes' if m.exact else 'NO') if m.gemm else '-'} |")
    lines += [
        "",
        "Ratios, free-running over each per-cycle way. *Per cycle*: the free-running rate on",
        "the larger GEMM over the per-cycle rate. *Per GEMM*: wall time of the same GEMM,",
        "per-cycle over free-running, job (and whole call).",
        "",
        "| design | vs mesh drive per cycle | vs mesh drive per GEMM, job (call) | "
        "vs driver + monitor per cycle | vs minimal loop per cycle | "
        "vs minimal loop per GEMM, job (call) | same mesh build: free / mesh drive |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for name, free_large, free, stepped, mesh, mesh_tasks, mesh_free in summary:
        per_cycle = free_large.rate / mesh.rate
        lines.append(
            f"| {name} | **{per_cycle:,.0f}x** | {mesh.job_s / free.job_s:,.0f}x "
            f"({mesh.host_s / free.host_s:,.1f}x) | {free_large.rate / mesh_tasks.rate:,.0f}x | "
            f"{free_large.rate / stepped.rate:,.0f}x | "
            f"{stepped.job_s / free.job_s:,.0f}x ({stepped.host_s / free.host_s:,.1f}x) | "
            f"{mesh_free.rate / mesh.rate:,.0f}x |")
        verdicts.append(f"{name} {per_cycle:,.0f}x "
                        f"({'meets' if per_cycle >= 100 else 'misses'} 100x)")
    lines += [
        "",
        "The issue's goal (free-running >= 100x \"driving the same array cycle by cycle from",
        "cocotb\", per simulated cycle) is judged against the per-cycle mesh drive: it is the",
        "array driven cycle by cycle doing the whole GEMM. Per simulated cycle: "
        + "; ".join(verdicts) + ". The minimal stepped loop does no testbench work at all, so",
        "its ratio is a lower bound that no per-cycle testbench can beat. Per GEMM, the whole",
        "call adds the simulator process's start-up and shutdown (~0.3-0.5 s) to both sides;",
        "`RtlSimulator.run` pays it once for a whole list of GEMMs.",
        "",
        *_where_the_time_goes(summary),
        "",
        "Breakdown of the free-running time: docs/systolic-hw.md (Co-simulation); what has",
        "been tried: docs/systolic-history.md (Free-run speed).",
    ]
    return "\n".join(lines) + "\n"


def _where_the_time_goes(summary) -> list[str]:
    """The closing paragraph: per cycle costs of each way, from this run's rates."""
    us = [(name, 1e6 / mesh.rate, 1e6 / free_large.rate, 1e6 / mesh_free.rate)
          for name, free_large, _, _, mesh, _, mesh_free in summary]
    step = f"{min(u[1] for u in us):.0f}-{max(u[1] for u in us):.0f}"
    free = ", ".join(f"{u[2]:.2f}" for u in us)
    mesh = ", ".join(f"{u[3]:.2f}" for u in us)
    names = ", ".join(u[0] for u in us)
    lines = [
        f"Where the time goes ({names}): a Python step per cycle costs {step} us (mesh",
        f"drive); the free run {free} us per cycle, of which the mesh alone (its own build",
        f"running free, last column) takes {mesh} us. The rest is the controller,",
        "scratchpads, DMA and memory model. A perf profile of a 2x3 free run puts about 85% of",
        "the simulator's time in the design's own evaluation and the rest in the C++ main's",
        "VPI checks: the clocked main evaluates the model without Verilator's per-call",
        "bookkeeping and skips cocotb's callback lists in the time steps where Python sleeps.",
    ]
    for name, step_us, free_us, mesh_us in us:
        if step_us / free_us < 100:  # what 100x would need of the rest of the accelerator
            budget = step_us / 100 - mesh_us
            lines.append(
                f"{name} misses 100x: the drive's step allows {step_us / 100:.2f} us per "
                f"cycle, its mesh takes {mesh_us:.2f} us of that, and the rest of the "
                f"accelerator takes {free_us - mesh_us:.2f} us where {max(budget, 0):.2f} "
                "would do.")
    return lines
