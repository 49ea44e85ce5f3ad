"""The cycle-by-cycle baseline: a whole GEMM computed by driving the bare PE array from Python.

This is what "driving the same array cycle by cycle from cocotb" means for benchmark 1 of the
accelerator: the accelerator's mesh (:class:`OsMesh` or :class:`WsMesh`, same
:class:`SystolicParams`) is emitted as its own Verilog top, and a cocotb test
(``mesh_drive_tb.py``) plays controller, scratchpads and DMA in Python, collecting the array's
output rows as they come and summing the K tiles' partial results like the accumulator
scratchpad does. The array tiles are the accelerator's: the same mapping (scratchpad tiles,
loop order, k innermost).

- os: on every clock one row of A (``rows`` operands), one row of B (``cols`` operands) and
  the ``valid``/``first``/``last`` flags; rows of C come when ``early``/``out_row`` announce
  them. An array tile is a ``rows x cols`` block of C over its tile's K range, spaced like the
  accelerator's feeder spaces them (a tile's last k at least ``rows`` cycles after the
  previous tile's).
- ws: the first tile's weights one row per cycle (``wl_valid``/``wl_row``/``wl_data``), then
  on every clock one row of A (one m, ``rows`` k values) with ``valid`` and, on a tile's first
  row, ``switch``; in each tile's window (from its slot ``cols - 1``) the next tile's weights,
  one row per cycle, as the accelerator's feeder loads them. An array tile is one k block by
  one n block over the scratchpad tile's m rows, at least ``rows + cols - 1`` cycles long (the
  window inside the tile); every fed row gives a row of C ``rows + cols`` cycles later.

Built with the same Verilator runner, flags and build cache as the accelerator
(:func:`hwloop.sim.systolic.rtl.build_verilated`). Not part of the package's runtime: the
benchmark and its test use it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwloop.buildcache import BuildCache, build_key
from hwloop.errors import ParameterError, SimulationError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.golden import wrap
from hwloop.sim.systolic.mapping import Gemm, Mapping, check_mapping, default_mapping, padded_dims
from hwloop.sim.systolic.rtl import SPEED_FLAGS
from hwloop.sim.verilator import build_verilated, public_vlt, run_testbench
from hwloop.toolchain import VERILATOR_LINT_FLAGS, tool_versions

MESH_MODULE = "hwloop_mesh"
MESH_TOP = "hwloop_mesh_harness"
#: the harness's signals the test touches, per dataflow
MESH_SIGNALS = {
    "os": ("clk", "rst", "a", "b", "valid", "first", "last", "early", "out_row", "out"),
    "ws": ("clk", "rst", "a", "valid", "switch", "wl_valid", "wl_row", "wl_data", "early",
           "out"),
}
TB_MODULE = "hwloop_mesh_drive_tb"
STYLES = ("loop", "tasks")
_MESH_SOURCE = Path(__file__).resolve().parents[1] / "hdl" / "systolic" / "mesh.py"


def mesh_verilog(params: SystolicParams) -> str:
    """Verilog of the accelerator's mesh alone (module ``hwloop_mesh``)."""
    key = build_key(sources={}, tools={"amaranth": tool_versions()["amaranth"]},
                    extra={"what": "systolic-mesh-verilog", "params": params.to_dict(),
                           "generator": hashlib.sha256(_MESH_SOURCE.read_bytes()).hexdigest()})

    def build(folder: Path) -> None:
        import os

        from amaranth.back import verilog

        from hwloop.hdl.systolic.mesh import OsMesh, WsMesh
        from hwloop.toolchain import yosys_command

        os.environ.setdefault("YOSYS", yosys_command()[0])
        mesh = (OsMesh if params.dataflow == "os" else WsMesh)(params=params)
        text = verilog.convert(mesh, name=MESH_MODULE, emit_src=False)
        (folder / "mesh.v").write_text(text)

    path, _ = BuildCache().get_or_build(key, build)
    return (path / "mesh.v").read_text()


def mesh_harness_verilog(params: SystolicParams) -> str:
    """The mesh's top: the same free clock as the accelerator's harness, inputs as registers."""
    a_bits, b_bits = params.rows * params.in_bits, params.cols * params.in_bits
    out_bits = params.cols * params.acc_bits
    row_bits = max(params.rows - 1, 1).bit_length()
    if params.dataflow == "ws":
        return f"""`timescale 1ns/1ps
module {MESH_TOP} (input wire clk);  // driven by the simulator's main, as the harness's
  reg rst = 1'b1;
  reg [{a_bits - 1}:0] a = {a_bits}'d0;
  reg valid = 1'b0;
  reg switch = 1'b0;
  reg wl_valid = 1'b0;
  reg [{row_bits - 1}:0] wl_row = {row_bits}'d0;
  reg [{b_bits - 1}:0] wl_data = {b_bits}'d0;
  wire early;
  wire [{out_bits - 1}:0] out;
  {MESH_MODULE} mesh (.clk(clk), .rst(rst), .a(a), .valid(valid), .switch(switch),
    .wl_valid(wl_valid), .wl_row(wl_row), .wl_data(wl_data), .early(early), .out(out));
endmodule
"""
    return f"""`timescale 1ns/1ps
module {MESH_TOP} (input wire clk);  // driven by the simulator's main, as the harness's
  reg rst = 1'b1;
  reg [{a_bits - 1}:0] a = {a_bits}'d0;
  reg [{b_bits - 1}:0] b = {b_bits}'d0;
  reg valid = 1'b0;
  reg first = 1'b0;
  reg last = 1'b0;
  wire early;
  wire [{row_bits - 1}:0] out_row;
  wire [{out_bits - 1}:0] out;
  {MESH_MODULE} mesh (.clk(clk), .rst(rst), .a(a), .b(b), .valid(valid), .first(first),
    .last(last), .early(early), .out_row(out_row), .out(out));
endmodule
"""


def array_tiles(params: SystolicParams, gemm: Gemm,
                mapping: Mapping) -> list[tuple[int, int, int, int]]:
    """The accelerator's array tiles in its order: ``(m0, n0, k0, length)`` each.

    Scratchpad tiles in the mapping's loop order (k innermost, as ``build_program``). os: in
    each the ``tile_m / rows`` m blocks (outer) by ``tile_n / cols`` n blocks (inner), each
    streaming the tile's ``length`` k values from ``k0``. ws: the ``tile_n / cols`` n blocks
    (outer) by ``tile_k / rows`` k blocks (inner), each streaming the tile's ``length`` m rows
    from ``m0`` through the weights of k block ``k0``.
    """
    pm, pn, pk = padded_dims(params, gemm)
    if params.dataflow == "ws":
        pm = gemm.m  # ws streams the real rows of A only
    tm, tn, tk = mapping.tile_m, mapping.tile_n, mapping.tile_k
    counts = {"m": -(-pm // tm), "n": -(-pn // tn), "k": -(-pk // tk)}
    outer, middle = mapping.order[0], mapping.order[1]
    tiles = []
    for i in range(counts[outer]):
        for j in range(counts[middle]):
            for ki in range(counts["k"]):
                idx = {outer: i, middle: j, "k": ki}
                m0, n0, k0 = idx["m"] * tm, idx["n"] * tn, ki * tk
                tm_e, tn_e, tk_e = min(tm, pm - m0), min(tn, pn - n0), min(tk, pk - k0)
                if params.dataflow == "ws":
                    tiles += [(m0, n0 + nb * params.cols, k0 + kb * params.rows, tm_e)
                              for nb in range(tn_e // params.cols)
                              for kb in range(tk_e // params.rows)]
                    continue
                for mb in range(tm_e // params.rows):
                    for nb in range(tn_e // params.cols):
                        tiles.append((m0 + mb * params.rows, n0 + nb * params.cols, k0, tk_e))
    return tiles


@dataclass
class MeshRun:
    c: np.ndarray     # m x n, wrapped to acc_bits
    cycles: int       # clock cycles from the first poke to the last output row
    run_s: float      # the per-cycle drive loop (incl. packing operands per tile)
    job_s: float      # run + reading the job file + writing the result, inside the simulator
    process_s: float  # the whole simulator process
    host_s: float     # MeshDrive.run: job file, simulator process, decode of C


class MeshDrive:
    """The accelerator's PE mesh built alone; :meth:`run` drives one GEMM through it per cycle."""

    def __init__(self, params: SystolicParams):
        self.params = params
        self._build_path: Path | None = None

    def build(self) -> float:
        """Build the simulator if needed; returns the seconds spent (0.0 when cached)."""
        began = time.monotonic()
        sources = {"mesh.v": mesh_verilog(self.params),
                   "harness.v": mesh_harness_verilog(self.params),
                   "public.vlt": public_vlt(MESH_TOP, MESH_SIGNALS[self.params.dataflow])}
        self._build_path, built = build_verilated(
            label=f"{self.params.name} mesh", sources=sources, top=MESH_TOP,
            flags=[*VERILATOR_LINT_FLAGS, *SPEED_FLAGS], extra={"what": "systolic-mesh-drive"},
            clock="clk", fast_extends=True)
        return time.monotonic() - began if built else 0.0

    def run(self, gemm: Gemm, a: np.ndarray, b: np.ndarray, mapping: Mapping | None = None,
            *, style: str = "loop") -> MeshRun:
        """Drive ``A @ B`` through the mesh; ``style``: "loop" (one coroutine samples the
        outputs inline) or "tasks" (a separate monitor coroutine samples them)."""
        if style not in STYLES:
            raise ParameterError(f"mesh drive style must be one of {', '.join(STYLES)}, "
                                 f"not {style!r}")
        if self._build_path is None:
            self.build()
        assert self._build_path is not None
        p = self.params
        if a.shape != (gemm.m, gemm.k) or b.shape != (gemm.k, gemm.n):
            raise ParameterError(f"operands {a.shape} x {b.shape} do not match gemm "
                                 f"m={gemm.m} n={gemm.n} k={gemm.k}")
        mapping = (mapping or default_mapping(p, gemm)).fit_to(p, gemm)
        check_mapping(p, gemm, mapping)
        began = time.perf_counter()
        pm, pn, pk = padded_dims(p, gemm)
        a_pad = np.zeros((pm, pk), dtype=np.int64)
        a_pad[:gemm.m, :gemm.k] = a
        b_pad = np.zeros((pk, pn), dtype=np.int64)
        b_pad[:gemm.k, :gemm.n] = b
        res = self._simulate({
            "m": pm, "n": pn, "a": a_pad.tolist(), "b": b_pad.tolist(),
            "tiles": array_tiles(p, gemm, mapping), "style": style,
            "dataflow": p.dataflow})
        if res.get("error"):
            raise SimulationError(f"mesh drive of {p.name}: {res['error']}")
        c = wrap(np.array(res["c"], dtype=np.int64), p.acc_bits)[:gemm.m, :gemm.n]
        return MeshRun(c=c, cycles=res["cycles"], run_s=res["run_s"], job_s=res["job_s"],
                       process_s=res["process_s"], host_s=time.perf_counter() - began)

    def idle(self, cycles: int) -> MeshRun:
        """The same build running free: ``cycles`` clock cycles with idle inputs while Python
        sleeps (``c`` is empty). The array evaluates the same logic every cycle either way."""
        if cycles < 1:
            raise ParameterError(f"idle cycles must be at least 1, not {cycles}")
        began = time.perf_counter()
        res = self._simulate({"idle_cycles": cycles})
        return MeshRun(c=np.zeros((0, 0), dtype=np.int64), cycles=res["cycles"],
                       run_s=res["run_s"], job_s=res["job_s"], process_s=res["process_s"],
                       host_s=time.perf_counter() - began)

    def _simulate(self, job: dict) -> dict:
        """One simulator process on ``job`` (plus the design's sizes); the test's result."""
        if self._build_path is None:
            self.build()
        assert self._build_path is not None
        p = self.params
        work = Path(tempfile.mkdtemp(prefix="hwloop-mesh-drive-"))
        try:
            result = work / "result.json"
            (work / "job.json").write_text(json.dumps({
                "rows": p.rows, "cols": p.cols, "in_bits": p.in_bits, "acc_bits": p.acc_bits,
                **job, "result": str(result)}))
            log = work / "sim.log"
            process_s = run_testbench(
                self._build_path, top=MESH_TOP, module=TB_MODULE, work=work, log=log,
                testbench=Path(__file__).with_name("mesh_drive_tb.py"),
                env={"HWLOOP_MESH_JOB": str(work / "job.json")})
            if not result.exists():
                kept = Path(tempfile.mkdtemp(prefix="hwloop-mesh-drive-log-")) / "sim.log"
                if log.exists():
                    shutil.copy(log, kept)
                raise SimulationError(f"the mesh drive of {p.name} produced no result "
                                      f"(log: {kept})", log_path=kept)
            return {**json.loads(result.read_text()), "process_s": process_s}
        finally:
            shutil.rmtree(work, ignore_errors=True)
