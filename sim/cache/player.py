"""The trace player: co-simulate a generated cache in Verilator, bit-exact against the model.

The harness (``tb_top``, generated Verilog) holds a chunk of the trace in a simulated memory
loaded in bulk with ``$fread`` and streams it into the cache in hardware, one access per
cycle (or after an idle gap of 0..15 cycles per access), while the cache's per-access response
(hit, way, evict, writeback) is written into a result memory dumped with ``$writememh``. Python
(the cocotb test in :mod:`hwloop.sim.cache.cocotb_player`) only loads chunks, starts the
player, waits for ``done`` and reads counters: the clock runs without entering Python.

``mode="direct"`` instead drives every access from Python (the per-access cocotb baseline).
Builds go through :class:`hwloop.buildcache.BuildCache`, so a design is compiled once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwloop.errors import ParameterError, SimulationError
from hwloop.hdl.cache.generate import cache_verilog
from hwloop.hdl.cache.params import CacheConfig
from hwloop.hdl.cache.prefetcher import PrefetcherConfig
from hwloop.paths import scratch
from hwloop.sim.verilator import build_verilated, run_testbench
from hwloop.toolchain import VERILATOR_LINT_FLAGS

from .model import CacheResult, simulate

CHUNK = 1 << 16  # at most 2**16: the PC index is 16 bits
#: The cocotb test (cocotb_player.py) as the simulator imports it: a top-level module, so that
#: hwloop is not imported into every simulator process.
TB_MODULE = "hwloop_cache_player_tb"
PF_COUNTERS = ("pf_requests", "pf_issued", "pf_useful", "pf_late", "pf_evicted_unused",
               "pf_dropped")
_MODEL_NAMES = {"pf_requests": "prefetch_requests", "pf_issued": "prefetch_issued",
                "pf_useful": "prefetch_useful", "pf_late": "prefetch_late",
                "pf_evicted_unused": "prefetch_evicted_unused",
                "pf_dropped": "prefetch_dropped"}


def counter_bits() -> int:
    """Width of the RTL's event counters (the cache's and the prefetcher's are the same)."""
    from hwloop.hdl.cache import cache, prefetcher  # read when used: tests narrow them

    if cache.COUNTER_BITS != prefetcher.COUNTER_BITS:
        raise ParameterError(f"cache counters of {cache.COUNTER_BITS} bits and prefetcher "
                             f"counters of {prefetcher.COUNTER_BITS} bits cannot be unwrapped "
                             "alike")
    return cache.COUNTER_BITS


def addr_bytes(config: CacheConfig) -> int:
    return (config.addr_bits + 7) // 8


def harness_verilog(config: CacheConfig, *, way_bits: int, prefetch: bool,
                    chunk: int = CHUNK) -> str:
    """The ``tb_top`` trace-player harness around the cache module ``cache``."""
    a = config.addr_bits
    ap = addr_bytes(config) * 8
    # {gap nibble, write nibble, 16-bit index into the chunk's PC table, addr in whole bytes},
    # loaded with $fread from a binary file (big-endian words); the chunk's distinct PCs go
    # in a second memory, so the bulk load reads little data
    tw = ap + 16 + 8
    cw = chunk.bit_length()  # pointers and count: 0..chunk
    iw = max(1, (chunk - 1).bit_length())  # memory index: 0..chunk-1, any chunk size
    counters = ["hits", "misses", "evictions", "writebacks"]
    if prefetch:
        counters += list(PF_COUNTERS)
    counter_ports = "".join(f"  output wire [{counter_bits() - 1}:0] {c},\n"
                            for c in counters)
    counter_conns = "".join(f"    .{c}({c}),\n" for c in counters)
    return f"""// hwloop cache trace player (generated)
`timescale 1ns/1ps
module tb_top (
  // driven by the simulator's main (sim/clocked_main.cpp): no Python on any edge
  input  wire clk,
  input  wire rst,
  input  wire load,
  input  wire run,
  input  wire dump,
  input  wire [{cw - 1}:0] count,
  input  wire direct,
  input  wire drv_valid,
  input  wire [{a - 1}:0] drv_addr,
  input  wire [63:0] drv_pc,
  input  wire drv_write,
  output wire drv_ready,
  output reg  done,
  output wire resp_valid,
  output wire resp_hit,
  output wire [{way_bits - 1}:0] resp_way,
  output wire resp_evict,
  output wire resp_writeback,
{counter_ports}  output reg  [{cw - 1}:0] issued
);
  reg [{tw - 1}:0] trace_mem [0:{chunk - 1}];
  reg [63:0] pc_mem [0:{chunk - 1}];
  reg [19:0] result_mem [0:{chunk - 1}];
  reg [{cw - 1}:0] rd_ptr;
  reg [{cw - 1}:0] wr_ptr;
  reg running;
  reg [3:0] gap_cnt;
  wire [{tw - 1}:0] word = trace_mem[rd_ptr[{iw - 1}:0]];
  wire [3:0] gap = word[{tw - 1}:{tw - 4}];
  wire p_write = word[{tw - 8}];
  wire [15:0] p_pc_index = word[{ap + 15}:{ap}];
  wire [63:0] p_pc = pc_mem[p_pc_index[{iw - 1}:0]];
  wire [{a - 1}:0] p_addr = word[{a - 1}:0];
  wire pending = running && (rd_ptr != count);
  wire p_valid = pending && (gap_cnt == gap);
  wire req_ready;
  cache dut (
    .clk(clk), .rst(rst),
    .req_valid(direct ? drv_valid : p_valid),
    .req_addr(direct ? drv_addr : p_addr),
    .req_pc(direct ? drv_pc : p_pc),
    .req_write(direct ? drv_write : p_write),
    .req_ready(req_ready),
{counter_conns}    .resp_valid(resp_valid), .resp_hit(resp_hit), .resp_way(resp_way),
    .resp_evict(resp_evict), .resp_writeback(resp_writeback)
  );
  assign drv_ready = req_ready;
  integer i;
  integer fd;
  integer got;
  initial begin
    for (i = 0; i < {chunk}; i = i + 1) result_mem[i] = 20'd0;
    done = 1'b0; running = 1'b0; rd_ptr = 0; wr_ptr = 0; gap_cnt = 4'd0; issued = 0;
  end
  always @(posedge clk) begin
    if (load) begin
      fd = $fopen("trace_chunk.bin", "rb");
      got = $fread(trace_mem, fd);
      $fclose(fd);
      fd = $fopen("pc_chunk.bin", "rb");
      got = $fread(pc_mem, fd);
      $fclose(fd);
    end
    if (dump) $writememh("result_chunk.hex", result_mem);
    if (run) begin
      running <= 1'b1; rd_ptr <= 0; wr_ptr <= 0; gap_cnt <= 4'd0; done <= 1'b0; issued <= 0;
    end else if (running) begin
      if (p_valid && req_ready) begin
        rd_ptr <= rd_ptr + 1'b1;
        gap_cnt <= 4'd0;
        issued <= issued + 1'b1;
      end else if (pending && gap_cnt != gap) begin
        gap_cnt <= gap_cnt + 4'd1;
      end
      if (resp_valid) begin
        result_mem[wr_ptr[{iw - 1}:0]] <= {{3'b000, resp_writeback, 3'b000, resp_evict,
                                          3'b000, resp_hit, {8 - way_bits}'d0, resp_way}};
        wr_ptr <= wr_ptr + 1'b1;
        if (wr_ptr + 1'b1 == count) begin
          done <= 1'b1;
          running <= 1'b0;
        end
      end
    end
  end
endmodule
"""


@dataclass(frozen=True)
class PlayerBuild:
    path: Path
    built: bool
    seconds: float


def build_player(config: CacheConfig, *, prefetch: PrefetcherConfig | None = None,
                 waves: bool = False, chunk: int = CHUNK) -> PlayerBuild:
    """The Verilator build of cache + harness (cached by content)."""
    if not 1 <= chunk <= CHUNK:
        raise ParameterError(f"chunk must be an integer in 1..{CHUNK}, not {chunk}")
    cache_v = cache_verilog(config, prefetch=prefetch, name="cache")
    way_bits = max(1, (config.ways - 1).bit_length())
    top_v = harness_verilog(config, way_bits=way_bits, prefetch=prefetch is not None,
                            chunk=chunk)
    flags = [*VERILATOR_LINT_FLAGS, "-Wno-BLKSEQ", "-O3", "--x-assign", "fast",
             "--x-initial", "fast"]
    if waves:  # FST as the systolic simulator writes (cocotb's --trace alone gives VCD)
        flags += ["--trace-fst", "--trace-structs"]
    start = time.monotonic()
    # cocotb's defaults otherwise: every signal public, verilated.mk's -Os
    path, built = build_verilated(label=config.name,
                                  sources={"cache.v": cache_v, "tb_top.v": top_v}, top="tb_top",
                                  flags=flags, extra={"what": "cache-player"},
                                  waves=waves, public_flat_rw=True, make_opt=(),
                                  clock="clk")
    return PlayerBuild(path=path, built=built, seconds=time.monotonic() - start)


@dataclass(kw_only=True, eq=False)
class PlayerResult:
    """What the RTL did: counters and the per-access log (as :class:`CacheResult`)."""

    result: CacheResult
    cycles: int
    sim_seconds: float
    build: PlayerBuild
    extra: dict = field(default_factory=dict)


def _check_gaps(gaps: np.ndarray | None, n: int) -> None:
    """Gaps are one 4-bit count per access: the harness kept the low 4 bits (16 became 0) and
    a gap array of another length failed inside the simulator ("produced no result")."""
    if gaps is None:
        return
    g = np.asarray(gaps)
    if g.shape != (n,):
        raise ParameterError(f"gaps must hold one value per access ({n}), not shape {g.shape}")
    if g.size and (g.dtype.kind not in "iub" or g.min() < 0 or g.max() > 15):
        raise ParameterError("gaps must be integers in 0..15 (idle cycles before an access)")


def run_player(config: CacheConfig, trace: np.ndarray, *,
               prefetch: PrefetcherConfig | None = None, gaps: np.ndarray | None = None,
               mode: str = "player", workdir: Path | None = None, waves: bool = False,
               chunk: int = CHUNK, timeout_s: float | None = None) -> PlayerResult:
    """Co-simulate ``trace`` through the RTL; returns its counters and per-access log."""
    _check_gaps(gaps, int(trace.size))
    build = build_player(config, prefetch=prefetch, waves=waves, chunk=chunk)
    if workdir is not None:
        # absolute: the simulator runs in it and finds its job file by the path it is given
        work = Path(workdir).resolve()
        work.mkdir(parents=True, exist_ok=True)
        return _play(build, config, trace, work, prefetch=prefetch, gaps=gaps,
                     mode=mode, waves=waves, chunk=chunk, timeout_s=timeout_s)
    with scratch("cache", keep_on_error=True, keep=waves) as work:
        return _play(build, config, trace, work, prefetch=prefetch, gaps=gaps, mode=mode,
                     waves=waves, chunk=chunk, timeout_s=timeout_s)


def _play(build: PlayerBuild, config: CacheConfig, trace: np.ndarray, work: Path, *,
          prefetch: PrefetcherConfig | None, gaps: np.ndarray | None, mode: str, waves: bool,
          chunk: int, timeout_s: float | None) -> PlayerResult:
    n = int(trace.size)
    gap = np.zeros(n, np.uint8) if gaps is None else np.asarray(gaps, np.uint8)
    # any nonzero flag is a write (as for the model and .trace files); the harness keeps
    # only bit 0 of it, so a flag of 2 was a read to the RTL
    np.savez(work / "trace.npz", addr=np.asarray(trace["addr"], np.uint64),
             pc=np.asarray(trace["pc"], np.uint64),
             write=(np.asarray(trace["write"]) != 0).astype(np.uint8), gap=gap)
    job = {"trace": str(work / "trace.npz"), "out": str(work / "rtl.npz"), "chunk": chunk,
           "mode": mode, "addr_bytes": addr_bytes(config), "addr_bits": config.addr_bits,
           "prefetch": prefetch is not None, "timeout_s": timeout_s,
           "counter_bits": counter_bits()}
    (work / "job.json").write_text(json.dumps(job))
    (work / "rtl.npz").unlink(missing_ok=True)
    log = work / "sim.log"
    seconds = run_testbench(build.path, top="tb_top", module=TB_MODULE, work=work, log=log,
                            testbench=Path(__file__).with_name("cocotb_player.py"), waves=waves,
                            env={"HWLOOP_PLAYER_JOB": str(work / "job.json")})
    if not (work / "rtl.npz").exists():
        raise SimulationError(f"the cache co-simulation of {config.name} produced no result",
                              log_path=log)
    with np.load(work / "rtl.npz", allow_pickle=False) as out:
        counters = json.loads(str(out["counters"][()]))
        hit = out["hit"].astype(bool)
        way = out["way"].astype(np.int16)
        evict = out["evict"].astype(bool)
        wb = out["writeback"].astype(bool)
    if hit.size != n:
        raise SimulationError(f"the co-simulation answered {hit.size} of {n} accesses",
                              log_path=log)
    values = {"hits": counters["hits"], "misses": counters["misses"],
              "evictions": counters["evictions"], "writebacks": counters["writebacks"]}
    if prefetch is not None:
        values.update({_MODEL_NAMES[k]: counters[k] for k in PF_COUNTERS})
    result = CacheResult(accesses=n, hit=hit, way=way, victim=np.where(evict, way, -1),
                         writeback=wb, **values)
    return PlayerResult(result=result, cycles=int(counters.get("cycles", 0)),
                        sim_seconds=seconds, build=build)


def compare(model: CacheResult, rtl: CacheResult) -> str | None:
    """The first difference between model and RTL, or None if they agree bit-exactly."""
    names = ["accesses", "hits", "misses", "evictions", "writebacks", "prefetch_requests",
             "prefetch_issued", "prefetch_useful", "prefetch_late", "prefetch_evicted_unused",
             "prefetch_dropped"]
    for field_name in ("hit", "way", "victim", "writeback"):
        a, b = getattr(model, field_name), getattr(rtl, field_name)
        if a.shape != b.shape:
            return f"{field_name}: model has {a.shape}, RTL {b.shape}"
        bad = np.flatnonzero(a != b)
        if bad.size:
            i = int(bad[0])
            return (f"access {i}: {field_name} model={a[i]} rtl={b[i]} "
                    f"({bad.size} accesses differ)")
    for name in names:
        if getattr(model, name) != getattr(rtl, name):
            return f"{name}: model={getattr(model, name)} rtl={getattr(rtl, name)}"
    return None


def check(config: CacheConfig, trace: np.ndarray, *, prefetch: PrefetcherConfig | None = None,
          gaps: np.ndarray | None = None, workdir: Path | None = None,
          waves: bool = False) -> tuple[CacheResult, PlayerResult, str | None]:
    """Run model and RTL on ``trace``; returns both and the first difference (None = equal)."""
    model = simulate(config, trace, prefetcher=prefetch)
    rtl = run_player(config, trace, prefetch=prefetch, gaps=gaps, workdir=workdir,
                     waves=waves)
    return model, rtl, compare(model, rtl.result)
