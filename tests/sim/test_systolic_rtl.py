"""RTL co-simulation of the accelerator, bit-exact against the golden model, model cycles exact.

One simulator build per design, many GEMM jobs per simulator process. Stimulus is random; the
seed is printed and can be set with HWLOOP_SEED.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic import harness as harness_module
from hwloop.sim.systolic import model as model_module
from hwloop.sim.systolic import program as program_module
from hwloop.sim.systolic import rtl as rtl_module
from hwloop.sim.systolic.golden import gemm_golden, random_operands
from hwloop.sim.systolic.mapping import Gemm, Mapping, default_mapping
from hwloop.sim.systolic.model import model_gemm, program_cycles
from hwloop.sim.systolic.rtl import RtlSimulator
from hwloop.sim.verilator import RUNTIME_OBJECTS

SEED = int(os.environ.get("HWLOOP_SEED", "1234"))


def _shapes(rng: np.random.Generator, params: SystolicParams, count: int) -> list[Gemm]:
    R, C = params.rows, params.cols
    fixed = [Gemm(m=1, n=1, k=1), Gemm(m=R, n=C, k=R), Gemm(m=2 * R + 1, n=2 * C + 1, k=7)]
    drawn = [Gemm(m=int(rng.integers(1, 4 * R + 2)), n=int(rng.integers(1, 4 * C + 2)),
                  k=int(rng.integers(1, 20))) for _ in range(count)]
    return fixed + drawn


def _small_mapping(rng: np.random.Generator, params: SystolicParams, gemm: Gemm) -> Mapping:
    """Several tiles in every dimension, so double buffering and k accumulation are exercised."""
    R, C = params.rows, params.cols
    order = str(rng.choice(["mnk", "nmk"]))
    if params.dataflow == "os":
        return Mapping(tile_m=R, tile_n=C, tile_k=int(rng.integers(1, 6)), order=order)
    return Mapping(tile_m=int(rng.integers(1, 6)), tile_n=C, tile_k=R, order=order)


def _check_design(params: SystolicParams, tmp_path, count: int = 6) -> None:
    print(f"HWLOOP_SEED={SEED} design={params.name}")
    rng = np.random.default_rng(SEED)
    jobs = []
    for gemm in _shapes(rng, params, count):
        for mapping in (default_mapping(params, gemm), _small_mapping(rng, params, gemm)):
            a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
            jobs.append((gemm, mapping, a, b))
    sim = RtlSimulator(params, workdir=tmp_path)
    sim.build()
    _run_exact(sim, jobs)


def _run_exact(sim: RtlSimulator, jobs: list) -> list:
    """Run ``jobs``; each C bit-exact against the golden model and the model's cycles and
    actions equal to the hardware counters."""
    params = sim.params
    runs = sim.run(jobs)
    assert len(runs) == len(jobs)
    for (gemm, mapping, a, b), run in zip(jobs, runs, strict=True):
        where = f"seed={SEED} {params.name} {gemm} {mapping}"
        gold = gemm_golden(a, b, acc_bits=params.acc_bits)
        assert run.c is not None and run.c.shape == gold.shape, where
        assert np.array_equal(run.c, gold), where
        model = model_gemm(params, gemm, mapping)
        assert model.cycles == run.cycles, (where, model.cycles, run.cycles)
        assert run.actions == model.actions, where
    return runs


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_os_2x3")
def test_os_2x3_int8(tmp_path):
    _check_design(SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32,
                                 ifmap_kib=4, weight_kib=4, acc_kib=4, mem_latency=3), tmp_path)


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_os_2x3")
def test_a_relative_workdir(tmp_path, monkeypatch):
    """The simulator runs in its work folder and finds its job file by the path it is given:
    a path relative to the caller's folder was not found there."""
    monkeypatch.chdir(tmp_path)
    params = SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32, ifmap_kib=4,
                            weight_kib=4, acc_kib=4, mem_latency=3)
    gemm = Gemm(m=3, n=5, k=7)
    a, b = random_operands(gemm, in_bits=params.in_bits, rng=np.random.default_rng(SEED))
    sim = RtlSimulator(params, workdir=Path("rel"))
    run = sim.run([(gemm, default_mapping(params, gemm), a, b)])[0]
    assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=params.acc_bits)), SEED
    assert (tmp_path / "rel" / "jobs.json").is_file()


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_os_2x3")
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_the_predicted_end_only_times_the_testbench_sleep(scale, tmp_path, monkeypatch):
    """The testbench sleeps on a timer to shortly before the model's predicted cycles: a
    prediction far too short (then it waits for `done`) or far too long (`done` came while it
    slept) measures the same hardware cycles, actions and sums."""
    params = SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32, ifmap_kib=4,
                            weight_kib=4, acc_kib=4, mem_latency=3)
    gemm = Gemm(m=9, n=7, k=40)
    mapping = default_mapping(params, gemm)
    a, b = random_operands(gemm, in_bits=params.in_bits, rng=np.random.default_rng(SEED))
    true = model_gemm(params, gemm, mapping)
    monkeypatch.setattr(rtl_module, "model_gemm", lambda *args: replace(
        true, cycles=int(true.cycles * scale)))
    run = RtlSimulator(params, workdir=tmp_path).run([(gemm, mapping, a, b)])[0]
    assert run.extra["model_cycles"] == int(true.cycles * scale)
    assert (run.cycles, run.actions) == (true.cycles, true.actions), SEED
    assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=params.acc_bits)), SEED


_SPLIT_DESIGNS = {  # the "-ahead" variants run them with read_ahead
    "os": SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32, ifmap_kib=4,
                         weight_kib=4, acc_kib=4, mem_latency=3),
    "ws": SystolicParams(rows=3, cols=2, dataflow="ws", in_bits=4, acc_bits=10, ifmap_kib=4,
                         weight_kib=4, acc_kib=4, bus_bytes=2, mem_latency=5),
}


def _split_program(params, gemm, mapping, variant, out_shift=0):
    program = program_module.build_program(params, gemm, mapping, split_ends=False,
                                           ahead=False, out_shift=out_shift)
    if variant.startswith("os"):
        program.instructions = program_module._split_ends(params, gemm, program.instructions)
        if "-stream" in variant:  # the first array tile computes on its rows as they arrive
            program.instructions = program_module._stream_first(
                params, program.instructions) or program.instructions
    else:  # ws-<k blocks per prologue piece>[-stream]
        split = program_module._split_ends_ws_pieces(params, program.instructions,
                                                     int(variant.split("-")[1]))
        program.instructions = split if split is not None else program.instructions
        if "-stream" in variant:
            program.instructions = program_module._stream_first(
                params, program.instructions) or program.instructions
    program.instructions = program_module.mark_store_waits(params, program.instructions)
    if variant.endswith("-ahead"):  # wherever possible, whether or not the model prefers it
        program.instructions = program_module.mark_ahead(params, program.instructions)
    return program


def _whole_tiles(walk, params):
    """A store burst's start if it waited for whole tiles, for comparison."""
    instr, dispatch, stall, preloaded = walk.last_compute
    return lambda n, in_drain_order, cpb=1, length=1: dispatch + model_module.drain_cycles(
        params, instr, stall, preloaded, tile=n - 1) + 2


@pytest.mark.parametrize("dataflow", [
    pytest.param("os", marks=pytest.mark.xdist_group("systolic_os_2x3")),
    pytest.param("ws", marks=pytest.mark.xdist_group("systolic_ws_3x2")),
])
def test_store_waits_per_burst(dataflow, tmp_path, monkeypatch):
    """Stores that start on the array tiles already drained (ws, and os in drain order: on
    the rows of the last one drained so far): fewer model cycles than waiting for whole drains
    on these write-bound layers, and the RTL takes exactly the model's."""
    params = _SPLIT_DESIGNS[dataflow]
    R = params.rows
    print(f"HWLOOP_SEED={SEED} design={params.name}")
    rng = np.random.default_rng(SEED)
    if dataflow == "os":
        cases = [(Gemm(m=12, n=15, k=3), Mapping(tile_m=4, tile_n=15, tile_k=3)),
                 (Gemm(m=20, n=9, k=2), Mapping(tile_m=6, tile_n=9, tile_k=2, order="nmk")),
                 # one n block per tile: the store has a burst per m block, each waiting for
                 # its own array tile, stored in drain order
                 (Gemm(m=16, n=5, k=2), Mapping(tile_m=8, tile_n=3, tile_k=2))]
    else:
        cases = [(Gemm(m=8, n=6, k=3), Mapping(tile_m=4, tile_n=6, tile_k=3)),
                 (Gemm(m=9, n=4, k=6), Mapping(tile_m=3, tile_n=4, tile_k=6)),
                 # long computes of one n block: the last store follows the last drain
                 (Gemm(m=24, n=2, k=15), Mapping(tile_m=12, tile_n=2, tile_k=15))]
    jobs = []
    tile_level: list[int] = []
    row_level: list[int] = []
    for gemm, mapping in cases:
        fitted = mapping.fit_to(params, gemm)
        marked = program_module.build_program(params, gemm, fitted,  # the plain tile loop
                                              split_ends=False).instructions
        assert any(i.store_c is not None and i.store_c.wait_first for i in marked)
        if fitted.tile_n == params.cols and dataflow == "os":
            assert any(i.store_c is not None and i.store_c.bursts == fitted.tile_m // R
                       and i.store_c.length == R and i.store_c.in_drain_order for i in marked)
        unmarked = [i if i.store_c is None else
                    replace(i, store_c=replace(i.store_c, wait_first=0, wait_step=0))
                    for i in marked]
        assert program_cycles(params, marked)[0] < program_cycles(params, unmarked)[0], gemm
        # a burst starts on the rows of its last tile drained so far
        with monkeypatch.context() as patch:
            patch.setattr(model_module._Walk, "tiles_drained", _whole_tiles)
            tile_level.append(program_cycles(params, marked)[0])
        row_level.append(program_cycles(params, marked)[0])
        a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
        jobs.append((gemm, mapping, a, b))
    assert all(r <= t for r, t in zip(row_level, tile_level, strict=True))
    assert row_level[-1] < tile_level[-1]  # the case made for it: strictly fewer
    runs = RtlSimulator(params, workdir=tmp_path).run(jobs)
    for (gemm, mapping, a, b), run in zip(jobs, runs, strict=True):
        where = f"seed={SEED} {params.name} {gemm} {mapping}"
        assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=params.acc_bits)), where
        assert run.cycles == model_gemm(params, gemm, mapping).cycles, where


@pytest.mark.parametrize("variant", [
    pytest.param("os", marks=pytest.mark.xdist_group("systolic_os_2x3")),
    pytest.param("os-stream", marks=pytest.mark.xdist_group("systolic_os_2x3")),
    pytest.param("ws-1", marks=pytest.mark.xdist_group("systolic_ws_3x2")),
    pytest.param("ws-2", marks=pytest.mark.xdist_group("systolic_ws_3x2")),
    pytest.param("ws-1-stream", marks=pytest.mark.xdist_group("systolic_ws_3x2")),
    pytest.param("ws-2-stream", marks=pytest.mark.xdist_group("systolic_ws_3x2")),
    pytest.param("os-ahead", marks=pytest.mark.xdist_group("systolic_os_2x3")),
    pytest.param("os-stream-ahead", marks=pytest.mark.xdist_group("systolic_os_2x3")),
    pytest.param("ws-1-ahead", marks=pytest.mark.xdist_group("systolic_ws_3x2")),
    pytest.param("ws-2-stream-ahead", marks=pytest.mark.xdist_group("systolic_ws_3x2")),
])
def test_split_ends_forced(variant, tmp_path, monkeypatch):
    """Programs with split first and last tiles (whether or not the model prefers them), over
    1-3 blocks in each tile dimension: bit-exact, and the model walks them exactly."""
    dataflow = variant[:2]
    params = _SPLIT_DESIGNS[dataflow]
    if variant.endswith("-ahead"):
        params = replace(params, read_ahead=True)
    R, C = params.rows, params.cols
    print(f"HWLOOP_SEED={SEED} design={params.name}")
    rng = np.random.default_rng(SEED)
    forced, aheads = [], []

    def build_split(p, gemm, mapping, out_shift=0):
        built = _split_program(p, gemm, mapping, variant, out_shift)
        forced.append(built.instructions[0].stream)
        aheads.append(sum(i.ahead for i in built.instructions))
        return built

    monkeypatch.setattr(harness_module, "build_program", build_split)
    jobs = []
    for outer in (1, 2, 3):
        for inner in (1, 2, 3):
            for steps in (2, 3):
                if dataflow == "os":  # outer: m blocks, inner: n blocks
                    mapping = Mapping(tile_m=outer * R, tile_n=inner * C,
                                      tile_k=int(rng.integers(1, 5)))
                    gemm = Gemm(m=outer * R * steps - int(rng.integers(0, R)),
                                n=inner * C, k=mapping.tile_k)
                else:  # outer: n blocks, inner: k blocks
                    mapping = Mapping(tile_m=int(rng.integers(1, 5)), tile_n=outer * C,
                                      tile_k=inner * R)
                    gemm = Gemm(m=mapping.tile_m * steps, n=outer * C - int(rng.integers(0, C)),
                                k=inner * R - int(rng.integers(0, R)))
                a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
                jobs.append((gemm, mapping, a, b))
    runs = RtlSimulator(params, workdir=tmp_path).run(jobs)
    assert len(forced) == len(jobs)
    if "-stream" in variant:
        assert sum(forced) >= len(jobs) // 2, forced
    if variant.endswith("-ahead"):
        assert sum(a > 0 for a in aheads) >= len(jobs) // 2, aheads
    for (gemm, mapping, a, b), run in zip(jobs, runs, strict=True):
        where = f"seed={SEED} {params.name} {gemm} {mapping}"
        assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=params.acc_bits)), where
        split = _split_program(params, gemm, mapping.fit_to(params, gemm), variant)
        cycles, actions = program_cycles(params, split.instructions)
        assert (cycles, actions) == (run.cycles, run.actions), where


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_ws_3x2")
def test_ws_3x2_int4_wrapping_accumulators(tmp_path):
    # 10-bit accumulators overflow within a few 4-bit products: wrap semantics are exercised
    _check_design(SystolicParams(rows=3, cols=2, dataflow="ws", in_bits=4, acc_bits=10,
                                 ifmap_kib=4, weight_kib=4, acc_kib=4, bus_bytes=2,
                                 mem_latency=5), tmp_path)


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_single_column")
@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_single_column_and_single_row_arrays(dataflow, tmp_path):
    """Arrays of one column (ws: every feed slot is in the weight window, which once compared
    an unsigned slot with 0 and failed to build) or one row."""
    rows, cols = (3, 1) if dataflow == "ws" else (1, 3)
    _check_design(SystolicParams(rows=rows, cols=cols, dataflow=dataflow, ifmap_kib=4,
                                 weight_kib=4, acc_kib=4, mem_latency=4), tmp_path, count=3)


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_ws_6x4_follow")
def test_a_store_follows_the_rows_of_a_stalled_following_compute(tmp_path):
    """ws, read_ahead: a following compute waits for each A row of the previous (ahead)
    instruction's load, so its tile's rows drain with gaps, and the next store, which follows
    the drain row by row, starts on its first row long before the last one is written. The
    model timed that store from the last row (as if the rows drained a cycle apart): 203
    cycles where the hardware counts 200 (found by a corner search, design 6005)."""
    params = SystolicParams(rows=6, cols=4, dataflow="ws", in_bits=16, acc_bits=32,
                            ifmap_kib=4, weight_kib=4, acc_kib=1, bus_bytes=2, mem_latency=60,
                            read_ahead=True)
    rng = np.random.default_rng(SEED)
    jobs = []
    for m, n, k, tile_m in ((7, 1, 5, 5), (7, 1, 5, 4), (9, 3, 5, 5), (13, 4, 6, 4)):
        gemm = Gemm(m=m, n=n, k=k)
        a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
        jobs.append((gemm, Mapping(tile_m=tile_m, tile_n=4, tile_k=6), a, b))
    runs = _run_exact(RtlSimulator(params, workdir=tmp_path), jobs)
    assert runs[0].cycles == 200


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_single_row_os")
@pytest.mark.parametrize("cols", [1, 3])
def test_os_single_row_k_tile_of_one_after_a_longer_one(cols, tmp_path):
    """os with one row: a k tile of length 1 whose instruction follows a longer one (tile_k=8,
    k=9) drains its one row in the cycle after the previous k tile's drain wrote the same
    accumulator row; the read-modify-write read the row before that write (the first k
    tile's sums were lost: 1x1x9 gave 3 where the golden model gives 33)."""
    params = SystolicParams(rows=1, cols=cols, dataflow="os", in_bits=8, acc_bits=16,
                            ifmap_kib=4, weight_kib=4, acc_kib=4, bus_bytes=128, mem_latency=0)
    rng = np.random.default_rng(SEED)
    jobs = []
    for m, n, k, tile_k in ((1, 1, 9, 8), (2, 3, 9, 8), (3, 4, 5, 4), (1, 2, 17, 8)):
        gemm = Gemm(m=m, n=n, k=k)
        for order in ("mnk", "nmk"):
            a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
            jobs.append((gemm, Mapping(tile_m=1, tile_n=cols, tile_k=tile_k, order=order), a, b))
    _run_exact(RtlSimulator(params, workdir=tmp_path), jobs)


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_os_1x33_bus1")
def test_a_c_row_longer_than_256_bus_cycles(tmp_path):
    """A C row of 33 64-bit sums is 264 bytes, 264 cycles on a 1-byte bus; the write pace
    counter had 8 bits, so it counted 263 & 255 = 7 cycles between rows and the hardware
    stored C far faster than the bus allows (150 cycles where the model counts 379; found by
    a corner search)."""
    params = SystolicParams(rows=1, cols=33, dataflow="os", in_bits=8, acc_bits=64,
                            ifmap_kib=4, weight_kib=4, acc_kib=4, bus_bytes=1, mem_latency=1)
    rng = np.random.default_rng(SEED)
    jobs = []
    for m, n, k in ((2, 33, 3), (1, 40, 2)):
        gemm = Gemm(m=m, n=n, k=k)
        a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
        jobs.append((gemm, Mapping(tile_m=1, tile_n=66, tile_k=k), a, b))
    sim = RtlSimulator(params, workdir=tmp_path)
    # one simulator process each: every job is timed from an idle write bus
    assert [_run_exact(sim, [job])[0].cycles for job in jobs] == [379, 410]


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_os_1x33_bus1")
def test_each_job_starts_on_an_idle_write_bus(tmp_path):
    """``done`` comes with the last C row sent, whose beat holds the write bus for its pace
    (263 more cycles for a 264-byte row on a 1-byte bus). The testbench started the next job
    of the same simulator process at once, so that job's first store waited for the previous
    job's pace: 523 cycles where the model, which times a GEMM from an idle accelerator,
    counts 410 (found by a corner search as 59 for 34 on a 1x16 ws design). Jobs now start
    ``settle_cycles`` after the previous ``done``."""
    params = SystolicParams(rows=1, cols=33, dataflow="os", in_bits=8, acc_bits=64,
                            ifmap_kib=4, weight_kib=4, acc_kib=4, bus_bytes=1, mem_latency=1)
    assert rtl_module.settle_cycles(params) == 264
    rng = np.random.default_rng(SEED)
    jobs = []
    for m, n, k in ((2, 33, 3), (1, 40, 2), (1, 1, 1), (1, 1, 1)):
        gemm = Gemm(m=m, n=n, k=k)
        a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
        jobs.append((gemm, Mapping(tile_m=1, tile_n=66, tile_k=k), a, b))
    runs = _run_exact(RtlSimulator(params, workdir=tmp_path), jobs)
    assert [run.cycles for run in runs[:2]] == [379, 410]


@pytest.mark.rtl
@pytest.mark.slow
def test_os_4x4_int16_acc40(tmp_path):
    _check_design(SystolicParams(rows=4, cols=4, dataflow="os", in_bits=16, acc_bits=40,
                                 ifmap_kib=8, weight_kib=8, acc_kib=8, bus_bytes=4,
                                 mem_latency=10), tmp_path)


@pytest.mark.rtl
@pytest.mark.slow
def test_ws_8x8_int8(tmp_path):
    # the default design (also used by the benchmarks, so the build is shared)
    _check_design(SystolicParams(rows=8, cols=8, dataflow="ws"), tmp_path)


@pytest.mark.rtl
@pytest.mark.slow
def test_os_8x8_int8(tmp_path):
    _check_design(SystolicParams(rows=8, cols=8, dataflow="os"), tmp_path)


@pytest.mark.rtl
@pytest.mark.slow
def test_waves_fst(tmp_path):
    params = SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32, ifmap_kib=4,
                            weight_kib=4, acc_kib=4, mem_latency=3)
    gemm = Gemm(m=5, n=7, k=9)
    a, b = random_operands(gemm, in_bits=8, rng=np.random.default_rng(SEED))
    sim = RtlSimulator(params, waves=True, workdir=tmp_path)
    run = sim.run([(gemm, default_mapping(params, gemm), a, b)])[0]
    assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=32))
    assert sim.waves_path is not None and sim.waves_path.suffix == ".fst"
    assert sim.waves_path.stat().st_size > 0
    assert run.extra["waves"] == str(sim.waves_path)


@pytest.mark.parametrize("waves", [False, True])
def test_waves_outlive_the_scratch_folder_of_a_run_without_workdir(tmp_path, monkeypatch,
                                                                   waves):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sim = RtlSimulator(SystolicParams(rows=2, cols=2), waves=waves)
    sim._build_path = tmp_path / "build"  # nothing is built: the run itself is faked

    def run(self, work, jobs, step, out_shifts):
        (work / "dump.fst").write_bytes(b"FST")
        self.waves_path = work / "dump.fst" if self.waves else None
        return []

    monkeypatch.setattr(RtlSimulator, "_run", run)
    assert sim.run([]) == []
    kept = list(tmp_path.glob("hwloop-systolic-*"))
    if waves:  # the folder waves_path points into
        assert kept == [sim.waves_path.parent] and sim.waves_path.read_bytes() == b"FST"
    else:
        assert kept == []


@pytest.mark.rtl
@pytest.mark.slow
def test_os_8x8_first_tile_spacing_stall(tmp_path):
    """k tiles of 7 then 1, 64 array tiles per instruction (compute-bound): the short tile's
    feed must wait for the previous tile's shift-out."""
    params = SystolicParams(rows=8, cols=8, dataflow="os")
    rng = np.random.default_rng(SEED)
    jobs = []
    for gemm in (Gemm(m=64, n=64, k=8), Gemm(m=64, n=64, k=15)):
        a, b = random_operands(gemm, in_bits=8, rng=rng)
        jobs.append((gemm, Mapping(tile_m=64, tile_n=64, tile_k=7, order="mnk"), a, b))
    runs = RtlSimulator(params, workdir=tmp_path).run(jobs)
    for (gemm, mapping, a, b), run in zip(jobs, runs, strict=True):
        assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=32)), (SEED, gemm)
        assert run.cycles == model_gemm(params, gemm, mapping).cycles, (SEED, gemm)


@pytest.mark.rtl
@pytest.mark.slow
def test_os_8x8_64cube_cycles_within_4300(tmp_path):
    """The issue's goal: 64x64x64 on the default 8x8 os array in <= 4,300 cycles (bound 4,096)
    with all data movement; the split first and last tiles hide most of the fill and drain."""
    params = SystolicParams()
    gemm = Gemm(m=64, n=64, k=64)
    mapping = default_mapping(params, gemm)
    a, b = random_operands(gemm, in_bits=8, rng=np.random.default_rng(SEED))
    run = RtlSimulator(params, workdir=tmp_path).run([(gemm, mapping, a, b)])[0]
    assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=32)), SEED
    model = model_gemm(params, gemm, mapping)
    assert run.cycles == model.cycles, (mapping, run.cycles, model.cycles)
    assert run.cycles <= 4300, (mapping, run.cycles)


@pytest.mark.rtl
def test_builds_share_the_verilator_runtime(tmp_path, monkeypatch):
    """The first build compiles the Verilator runtime's objects and leaves them in the cache;
    a build of another design copies them and compiles only its own model (and still runs
    bit-exact)."""
    monkeypatch.setenv("HWLOOP_CACHE", str(tmp_path / "cache"))
    first = RtlSimulator(SystolicParams(rows=1, cols=2, dataflow="os"), workdir=tmp_path / "a")
    second = RtlSimulator(SystolicParams(rows=1, cols=2, dataflow="ws"), workdir=tmp_path / "b")
    logs = []
    for sim in (first, second):
        sim.build()
        logs.append((sim._build_path / "build.log").read_text())
    compiled = [name for name in RUNTIME_OBJECTS if f"-o {name}.o" in logs[0]]
    assert {"verilated", "verilated_vpi"} <= set(compiled)
    assert not any(f"-o {name}.o" in logs[1] for name in RUNTIME_OBJECTS)
    assert "-o Vtop__ALL.o" in logs[1]
    gemm = Gemm(m=3, n=5, k=4)
    a, b = random_operands(gemm, in_bits=8, rng=np.random.default_rng(SEED))
    run = second.run([(gemm, default_mapping(second.params, gemm), a, b)])[0]
    assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=32)), SEED
