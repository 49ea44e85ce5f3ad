"""RTL co-simulation of the accelerator: Verilator through cocotb's runner, many GEMMs per run.

The design is built once per parameter set (BuildCache, keyed by the Verilog, the harness, the
flags and the tool versions) and every :meth:`RtlSimulator.run` starts one simulator process for
its whole job list. The accelerator runs free: Python only loads memories, pulses ``start`` and
waits for ``done``; cycles come from the hardware's own cycle counter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hwloop.buildcache import BuildCache, build_key
from hwloop.errors import ParameterError, SimulationError, SimulationTimeout
from hwloop.hdl.systolic.accelerator import COUNTERS
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.paths import scratch
from hwloop.sim.systolic.golden import resolve_out_shift
from hwloop.sim.systolic.harness import (
    FILES,
    HARNESS_TOP,
    INSTR_DEPTH,
    harness_verilog,
    job_images,
    memory_depths,
    unlayout_c,
    unpack_rows,
)
from hwloop.sim.systolic.mapping import (
    Gemm,
    Mapping,
    elem_bytes,
    out_bytes,
    out_field_bits,
    padded_dims,
)
from hwloop.sim.systolic.model import GemmRun, model_gemm
from hwloop.sim.systolic.program import (
    cycles_per_beat,
)
from hwloop.sim.verilator import build_verilated, public_vlt, run_testbench
from hwloop.toolchain import VERILATOR_LINT_FLAGS, tool_versions

#: ``--output-split-cfuncs``: the design's clocked evaluation in functions of at most 3,000
#: statements instead of one: the C++ compiler optimizes (and compiles) the smaller functions
#: better, 3-13% faster free runs from 2x3 to 16x16 and a third less build time (session 9).
SPEED_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
               "--output-split-cfuncs", "3000")


def settle_cycles(params: SystolicParams) -> int:
    """Cycles after ``done`` until the accelerator is idle: ``done`` comes with the last C row
    sent, whose beat keeps the write bus (its pace counter) busy for ``ceil(row bytes /
    bus_bytes)`` cycles; a read beat (issued earlier) never longer than its own. The model times
    every GEMM from an idle accelerator, so the testbench starts no job sooner."""
    e = elem_bytes(params)
    return max(cycles_per_beat(params.rows * e, params.bus_bytes),
               cycles_per_beat(params.cols * e, params.bus_bytes),
               cycles_per_beat(params.cols * out_bytes(params), params.bus_bytes))


def cached_verilog(params: SystolicParams) -> str:
    """The accelerator's Verilog, generated once per parameter set and generator version."""
    from hwloop.hdl.systolic import generate_verilog, generator_digest

    key = build_key(sources={}, extra={"what": "systolic-verilog", "params": params.to_dict(),
                                       "generator": generator_digest()},
                    tools={"amaranth": tool_versions()["amaranth"]})

    def build(folder: Path) -> None:
        (folder / "design.v").write_text(generate_verilog(params))

    path, _ = BuildCache().get_or_build(key, build)
    return (path / "design.v").read_text()


#: Only the signals the testbench touches are visible to cocotb: making every signal public
#: (cocotb's default ``--public-flat-rw``) stops Verilator from optimizing the design.
PUBLIC_SIGNALS = ("clk", "rst", "start", "load", "dump", "n_instr", "c_rows", "done",
                  *(f"cnt_{name}" for name in COUNTERS))


PUBLIC_VLT = public_vlt(HARNESS_TOP, PUBLIC_SIGNALS)

TB_MODULE = "hwloop_systolic_tb"

class RtlSimulator:
    """One accelerator design; builds once (BuildCache), runs many GEMMs per simulator process."""

    def __init__(self, params: SystolicParams, *, waves: bool = False,
                 workdir: Path | None = None):
        self.params = params
        self.waves = waves
        # absolute: the simulator runs in it and finds its job files by the paths it is given
        self.workdir = Path(workdir).resolve() if workdir is not None else None
        self._build_path: Path | None = None
        self.waves_path: Path | None = None
        #: wall seconds of the last run's simulator process (start-up, all jobs, shutdown)
        self.process_s = 0.0

    def _flags(self) -> list[str]:
        flags = [*VERILATOR_LINT_FLAGS, *SPEED_FLAGS]
        if self.waves:
            flags += ["--trace-fst", "--trace-structs"]
        return flags

    def build(self) -> float:
        """Build the simulator if needed; returns the seconds spent (0.0 when cached)."""
        start = time.monotonic()
        design = cached_verilog(self.params)
        harness = harness_verilog(self.params)
        flags = self._flags()
        path, built = build_verilated(
            label=self.params.name, top=HARNESS_TOP, flags=flags, waves=self.waves,
            sources={"design.v": design, "harness.v": harness, "public.vlt": PUBLIC_VLT},
            extra={"what": "systolic-rtl"}, clock="clk",
            fast_extends=True)
        self._build_path = path
        return time.monotonic() - start if built else 0.0

    def _write_job(self, index: int, folder: Path, gemm: Gemm, mapping: Mapping,
                   a: np.ndarray, b: np.ndarray, out_shift: int) -> dict:
        p = self.params
        images = job_images(p, gemm, mapping, a, b, out_shift=out_shift, what=f"job {index}")
        fitted, program = images.mapping, images.program
        depths = memory_depths(p)
        sizes = {"a": program.layout.a_rows, "b": program.layout.b_rows,
                 "c": program.layout.c_rows}
        for name, rows in sizes.items():
            if rows > depths[name]:
                raise ParameterError(
                    f"gemm m={gemm.m} n={gemm.n} k={gemm.k} needs {rows} rows of external "
                    f"{name.upper()} memory, the harness of {p.name} has {depths[name]}")
        if len(program.instructions) > INSTR_DEPTH:
            raise ParameterError(
                f"mapping {fitted.to_dict()} needs {len(program.instructions)} instructions, "
                f"the harness holds {INSTR_DEPTH}: use larger tiles")
        paths = {key: folder / f"job{index}_{key}.hex" for key in ("instr", "a", "b", "c")}
        paths["instr"].write_text(images.instr_hex)
        paths["a"].write_text(images.a_hex)
        paths["b"].write_text(images.b_hex)
        model = model_gemm(p, gemm, fitted)
        return {"instr": str(paths["instr"]), "a": str(paths["a"]), "b": str(paths["b"]),
                "c": str(paths["c"]), "n_instr": len(program.instructions),
                "c_rows": sizes["c"], "max_cycles": 2 * model.cycles + 10_000,
                "model_cycles": model.cycles}

    def run(self, jobs: list[tuple[Gemm, Mapping, np.ndarray, np.ndarray]], *,
            step: bool = False, out_shifts: Sequence[int | None] | None = None
            ) -> list[GemmRun]:
        """Run every job in one simulator process; results in job order.

        ``out_shifts``: per job, the requantization shift of a design with ``out_bits`` (None:
        ``golden.default_out_shift``); it is in each run's ``extra["out_shift"]``.

        ``step=True`` makes the testbench wake up on every clock edge instead of sleeping until
        ``done`` (only to measure what free running saves).
        """
        if self._build_path is None:
            self.build()
        assert self._build_path is not None
        if out_shifts is not None and len(out_shifts) != len(jobs):
            raise ParameterError(f"{len(out_shifts)} out_shifts for {len(jobs)} jobs")
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            return self._run(self.workdir, jobs, step, out_shifts)
        # kept if the run fails (its error names the log in it) or holds the waves
        with scratch("systolic", keep_on_error=True, keep=self.waves) as work:
            return self._run(work, jobs, step, out_shifts)

    def _run(self, work: Path, jobs: list[tuple[Gemm, Mapping, np.ndarray, np.ndarray]],
             step: bool, out_shifts: Sequence[int | None] | None) -> list[GemmRun]:
        p = self.params
        if out_shifts is None:
            out_shifts = [None] * len(jobs)
        shifts = [resolve_out_shift(p, job[0], shift)
                  for job, shift in zip(jobs, out_shifts, strict=True)]
        specs = [self._write_job(i, work, *job, shift)
                 for i, (job, shift) in enumerate(zip(jobs, shifts, strict=True))]
        for spec in specs:
            spec["step"] = step
        results_path = work / "results.json"
        results_path.unlink(missing_ok=True)
        (work / "jobs.json").write_text(json.dumps({"jobs": specs, "files": FILES,
                                                    "counters": list(COUNTERS),
                                                    "settle": settle_cycles(p),
                                                    "results": str(results_path)}))
        log = work / "sim.log"
        self.process_s = run_testbench(
            self._build_path, top=HARNESS_TOP, testbench=Path(__file__).with_name("tb.py"),
            module=TB_MODULE, work=work, log=log, waves=self.waves,
            env={"HWLOOP_SYSTOLIC_JOBS": str(work / "jobs.json")})
        if not results_path.exists():
            raise SimulationError(f"the co-simulation of {p.name} produced no result "
                                  f"(log: {log})", log_path=log)
        results = json.loads(results_path.read_text())
        if self.waves and (work / "dump.fst").exists():
            self.waves_path = work / "dump.fst"
        runs: list[GemmRun] = []
        for i, ((gemm, _mapping, _a, _b), spec) in enumerate(zip(jobs, specs, strict=True)):
            if i >= len(results):
                raise SimulationError(f"job {i} of {p.name} did not run (log: {log})",
                                      log_path=log)
            res = results[i]
            if res["timeout"]:
                raise SimulationTimeout(
                    f"job {i} (gemm m={gemm.m} n={gemm.n} k={gemm.k}) on {p.name} did not finish "
                    f"within {spec['max_cycles']} cycles (log: {log})", log_path=log)
            counters = res["counters"]
            rows = unpack_rows(Path(spec["c"]), spec["c_rows"], p.cols, out_field_bits(p))
            c = unlayout_c(p, rows, gemm.m, gemm.n, padded_dims(p, gemm))
            actions = {k: v for k, v in counters.items() if k != "cycles"}
            runs.append(GemmRun(cycles=counters["cycles"], actions=actions, c=c,
                                sim_s=res["sim_s"],
                                extra={"model_cycles": spec["model_cycles"],
                                       "out_shift": shifts[i],
                                       # wall seconds of the job's $readmemh load, its run
                                       # from start to done, and the C dump
                                       **res["phases"],
                                       "waves": str(self.waves_path) if self.waves_path
                                       else None}))
        return runs
