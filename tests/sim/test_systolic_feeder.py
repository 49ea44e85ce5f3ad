"""Controller latency: one dispatch cycle per instruction, and the ws weight prologue hidden
across instructions (``preload_next``). Model == RTL exactly, bit-exact against the golden GEMM.

The seed is printed and can be set with HWLOOP_SEED.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from hwloop.hdl.systolic.accelerator import feeder_guard
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic import harness as harness_module
from hwloop.sim.systolic import model as model_module
from hwloop.sim.systolic import program as program_module
from hwloop.sim.systolic import rtl as rtl_module
from hwloop.sim.systolic.golden import gemm_golden, random_operands
from hwloop.sim.systolic.mapping import Gemm, Mapping
from hwloop.sim.systolic.model import (
    DISPATCH_CYCLES,
    DONE_CYCLES,
    START_CYCLES,
    WalkTrace,
    feed_cycles,
    instruction_actions,
    model_gemm,
    program_cycles,
    tile_period,
)
from hwloop.sim.systolic.program import (
    FIELD_BITS,
    FIELDS,
    Compute,
    Instruction,
    Transfer,
    build_program,
    encode,
    mark_ahead,
    mark_preloads,
    prologue_length,
)
from tests.sim.random_layers import random_mapping

SEED = int(os.environ.get("HWLOOP_SEED", "1234"))

# the default ws test design of test_systolic_rtl.py (same build, same xdist group)
WS = SystolicParams(rows=3, cols=2, dataflow="ws", in_bits=4, acc_bits=10, ifmap_kib=4,
                    weight_kib=4, acc_kib=4, bus_bytes=2, mem_latency=5)
OS = SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32, ifmap_kib=4,
                    weight_kib=4, acc_kib=4, mem_latency=3)
# ws, weights reused across m steps and compute-bound: 4 n blocks x 10 k blocks per step
REUSE_GEMM = Gemm(m=40, n=8, k=30)
REUSE_MAPPING = Mapping(tile_m=8, tile_n=8, tile_k=30, order="nmk")
# ws, new weights every step: the next compute's weights are preloaded when this instruction's
# weight load is written by the time the last tile's preload window opens
DYN_GEMM = Gemm(m=70, n=6, k=26)
DYN_MAPPING = Mapping(tile_m=46, tile_n=6, tile_k=6, order="mnk")

# ws layers whose programs use split ends on WS (found with the model): several n blocks in
# the first and the last tile, k accumulated over steps, partial tiles, 1 to 7 k blocks
SPLIT_WS_SHAPES = [
    (Gemm(m=39, n=5, k=12), Mapping(tile_m=23, tile_n=6, tile_k=3, order="mnk")),
    (Gemm(m=4, n=8, k=30), Mapping(tile_m=4, tile_n=4, tile_k=6, order="nmk")),
    (Gemm(m=3, n=9, k=29), Mapping(tile_m=3, tile_n=6, tile_k=12, order="mnk")),
    (Gemm(m=44, n=9, k=30), Mapping(tile_m=6, tile_n=4, tile_k=21, order="mnk")),
    (Gemm(m=13, n=9, k=26), Mapping(tile_m=13, tile_n=2, tile_k=21, order="mnk")),
]
# ws, batch 1: array tiles of one row, each next tile's weights loading into the one after
GEMV_GEMM = Gemm(m=1, n=4, k=24)
GEMV_MAPPING = Mapping(tile_m=1, tile_n=4, tile_k=12, order="mnk")


def _without_preloads(instrs: list[Instruction], *, static: bool = True) -> list[Instruction]:
    """The program with no ``preload_next_when_loaded`` flags, and no ``preload_next`` flags
    either unless ``static`` is False."""
    return [replace(i, preload_next=i.preload_next and not static,
                    preload_next_when_loaded=False) for i in instrs]


def _flags(instr: Instruction) -> int:
    return encode(instr) & ((1 << FIELD_BITS) - 1)


def test_preload_flag_is_bit5_of_flags():
    comp = Compute(a_base=1, b_base=2, acc_base=3, outer=1, inner=1, length=4)
    assert _flags(Instruction(compute=comp)) == 0b1
    assert _flags(Instruction(compute=comp, preload_next=True)) == 0b100001
    assert FIELDS[0] == "flags"


def test_preload_only_when_the_next_weights_are_not_being_loaded():
    comp = Compute(b_base=0, outer=1, inner=1, length=8)
    other = Compute(b_base=64, outer=1, inner=1, length=8)
    loads_next = Transfer(spad_base=64, spad_stride=6, bursts=2, length=6)  # rows 64..69, 70..75
    loads_elsewhere = Transfer(spad_base=0, spad_stride=6, bursts=1, length=3)
    instrs = [Instruction(compute=comp, load_b=loads_next), Instruction(compute=other),
              Instruction(compute=comp, load_b=loads_elsewhere), Instruction(compute=other),
              Instruction(compute=comp), Instruction(store_c=Transfer(bursts=1, length=1))]
    marked = mark_preloads(WS, instrs)
    assert [i.preload_next for i in marked] == [False, True, True, True, False, False]
    # the rows of the next compute's first tile (64..66) overlap the load by one row
    edge = [Instruction(compute=comp, load_b=Transfer(spad_base=66, bursts=1, length=1)),
            Instruction(compute=other)]
    assert [i.preload_next for i in mark_preloads(WS, edge)] == [False, False]


def test_os_programs_never_preload():
    program = build_program(OS, Gemm(m=8, n=9, k=5),
                            Mapping(tile_m=2, tile_n=3, tile_k=5, order="nmk"))
    assert not any(i.preload_next for i in program.instructions)


def test_ws_reuse_program_hides_every_prologue_but_the_first():
    program = build_program(WS, REUSE_GEMM, REUSE_MAPPING.fit_to(WS, REUSE_GEMM),
                            split_ends=False)
    instrs = program.instructions
    computes = [i for i in instrs if i.compute is not None]
    assert len(computes) == 5  # five m steps, one B load
    assert [i.preload_next for i in instrs if i.compute is not None] == [True] * 4 + [False]
    with_preload = program_cycles(WS, instrs)[0]
    without = program_cycles(WS, _without_preloads(instrs))[0]
    # compute-bound steps: each hidden prologue saves its cycles (rows - cols + 1 on 3x2)
    assert without - with_preload == 4 * prologue_length(WS) == 4 * 2
    # the actions do not change: the same weights are read, only earlier
    assert program_cycles(WS, instrs)[1] == program_cycles(WS, _without_preloads(instrs))[1]


def test_ws_split_ends_are_kept_only_when_faster():
    fitted = REUSE_MAPPING.fit_to(WS, REUSE_GEMM)
    plain = build_program(WS, REUSE_GEMM, fitted, split_ends=False).instructions
    split = build_program(WS, REUSE_GEMM, fitted).instructions
    assert len(split) > len(plain)
    # the first instruction loads one k block of A instead of the whole tile
    assert split[0].load_a is not None and plain[0].load_a is not None
    assert split[0].load_a.rows < plain[0].load_a.rows
    # only one n block of sums is stored after the last compute
    assert split[-1].store_c is not None and plain[-1].store_c is not None
    assert split[-1].store_c.rows * 4 == plain[-1].store_c.rows
    assert program_cycles(WS, split)[0] < program_cycles(WS, plain)[0]
    assert program_cycles(WS, split)[1] == program_cycles(WS, plain)[1]  # same work
    # a single-step layer keeps the plain loop
    one = Gemm(m=4, n=2, k=3)
    assert build_program(WS, one, Mapping(tile_m=4, tile_n=2, tile_k=3)).instructions == \
        build_program(WS, one, Mapping(tile_m=4, tile_n=2, tile_k=3),
                      split_ends=False).instructions


@pytest.mark.parametrize("gemm,mapping", SPLIT_WS_SHAPES)
def test_split_ws_shapes_take_the_faster_program(gemm, mapping):
    """The builder keeps the faster of the plain loop and the best split program (as the
    model times them, store waits included) and reports that program's cycles."""
    fitted = mapping.fit_to(WS, gemm)
    chosen = build_program(WS, gemm, fitted)
    plain = build_program(WS, gemm, fitted, split_ends=False).instructions
    split = build_program(WS, gemm, fitted, split_ends=True).instructions
    assert chosen.cycles == program_cycles(WS, chosen.instructions)[0]
    assert chosen.cycles == min(program_cycles(WS, plain)[0], program_cycles(WS, split)[0])


def test_split_ws_shapes_some_split():
    """On these shapes the split ends win on most (3 of 5 with store waits); the builder must
    take them where they do."""
    used = 0
    for gemm, mapping in SPLIT_WS_SHAPES:
        fitted = mapping.fit_to(WS, gemm)
        used += len(build_program(WS, gemm, fitted).instructions) > \
            len(build_program(WS, gemm, fitted, split_ends=False).instructions)
    assert used >= 3


def test_ws_preload_when_loaded():
    program = build_program(WS, DYN_GEMM, DYN_MAPPING.fit_to(WS, DYN_GEMM), split_ends=False)
    instrs = program.instructions
    assert not any(i.preload_next for i in instrs)  # every compute's weights are loaded just before
    flagged = [i.preload_next_when_loaded for i in instrs]
    assert flagged == [i.compute is not None and j + 1 < len(instrs)
                       and instrs[j + 1].compute is not None for j, i in enumerate(instrs)]
    saved = program_cycles(WS, _without_preloads(instrs))[0] - program_cycles(WS, instrs)[0]
    assert saved > 0 and saved % prologue_length(WS) == 0
    assert _flags(instrs[1]) & 0b1100000 == 0b1000000


def _random_layers(rng: np.random.Generator, *, m_max: int, n_max: int, k_max: int):
    """Endless random (design, layer, fitted mapping) draws that fit: arrays up to 8x8 on
    2-16 byte buses, latencies 0-24, 1-3 array blocks per tile."""
    while True:
        R, C = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        dataflow = str(rng.choice(["os", "ws"]))
        params = SystolicParams(rows=R, cols=C, dataflow=dataflow, ifmap_kib=8, weight_kib=8,
                                acc_kib=8, bus_bytes=int(rng.choice([2, 4, 8, 16])),
                                mem_latency=int(rng.integers(0, 25)))
        gemm = Gemm(m=int(rng.integers(1, m_max)), n=int(rng.integers(1, n_max)),
                    k=int(rng.integers(1, k_max)))
        mapping = random_mapping(rng, params, gemm, free=40)
        if mapping is not None:
            yield params, gemm, mapping


def test_split_choice_shortcuts_are_exact():
    """The program choice walks only the split ends of each candidate (``spliced_cycles``) and
    marks preload flags only around them: both equal the full walk and full marking."""
    print(f"HWLOOP_SEED={SEED}")
    rng = np.random.default_rng(SEED)
    checked = 0
    for params, gemm, mapping in _random_layers(rng, m_max=100, n_max=60, k_max=100):
        if checked >= 150:
            break
        os_flow = params.dataflow == "os"
        plain = build_program(params, gemm, mapping, split_ends=False, ahead=False).instructions
        if sum(i.compute is not None for i in plain) < 2:
            continue
        trace = WalkTrace()
        program_cycles(params, plain, actions=False, trace=trace)
        if os_flow:
            splits = [program_module._split_ends(params, gemm, plain)]
        else:
            splits = [s for s in (program_module._split_ends_ws_pieces(params, plain, g)
                                  for g in (1, 2, 4, 8)) if s is not None]
        for split in splits:
            where = (params, gemm, mapping)
            if not os_flow:
                assert split == mark_preloads(params, split), where
            assert split == program_module.mark_store_waits(params, split), where
            assert program_module._split_cycles(params, plain, trace, split) == \
                program_cycles(params, split, actions=False)[0], where
            checked += 1


def _stepwise(params, instrs: list[Instruction]) -> tuple[int, dict[str, int]]:
    """The model's walk one instruction at a time, no jumps, and per-instruction actions."""
    w = model_module._Walk()
    totals = dict.fromkeys(model_module.ACTIONS, 0)
    for instr in instrs:
        model_module._step(params, instr, w)
        instruction_actions(params, instr, totals)
    return w.cycles + DONE_CYCLES, totals


def test_walk_jumps_are_exact(monkeypatch):
    """``program_cycles`` jumps over runs of instructions that repeat an earlier walk and
    counts actions once per instruction shape: both equal the walk one instruction at a time,
    on random layers and mappings (plain and split programs), and the states the trace makes
    on demand equal the stepwise walk's."""
    print(f"HWLOOP_SEED={SEED}")
    rng = np.random.default_rng(SEED + 1)
    steps = 0
    real_step = model_module._step

    def counting_step(*args):
        nonlocal steps
        steps += 1
        real_step(*args)

    checked = instructions = 0
    for params, gemm, mapping in _random_layers(rng, m_max=200, n_max=100, k_max=200):
        if checked >= 60:
            break
        where = (params, gemm, mapping)
        for split, ahead in ((False, None), (True, None), (True, True)):
            design = replace(params, read_ahead=True) if ahead else params
            instrs = build_program(design, gemm, mapping, split_ends=split,
                                   ahead=ahead).instructions
            trace = WalkTrace()
            monkeypatch.setattr(model_module, "_step", counting_step)
            jumped = program_cycles(design, instrs, trace=trace)
            monkeypatch.setattr(model_module, "_step", real_step)
            assert jumped == _stepwise(design, instrs), where
            w = model_module._Walk()
            for j, instr in enumerate(instrs):
                assert trace[j].key(design) == w.key(design), (where, j)
                assert trace[j].cycles == w.cycles, (where, j)
                real_step(design, instr, w)
            instructions += len(instrs)
        checked += 1
    assert steps < instructions / 2  # the walk does jump (on these layers about 4x fewer)


def test_instructions_follow_without_a_gap():
    """A compute-only program's cycles are the feeds (each instruction is dispatched in the
    last cycle of the one before) plus the first fetch and the final cycle: fails if fetch or
    dispatch cycles or the ws prologue come back."""
    comp = Compute(a_base=0, b_base=0, acc_base=0, outer=2, inner=2, length=40)
    instrs = [Instruction(compute=comp, preload_next=True) for _ in range(6)]
    instrs[-1] = Instruction(compute=comp)
    cycles, _ = program_cycles(WS, instrs)
    feed = 4 * 40  # no prologue: every compute after the first is preloaded
    assert cycles == START_CYCLES + prologue_length(WS) + 6 * feed + DONE_CYCLES
    assert DISPATCH_CYCLES == 0 and START_CYCLES + DONE_CYCLES == 2
    assert feed_cycles(WS, instrs[-1]) == prologue_length(WS) + feed
    assert feed_cycles(WS, instrs[-1], preloaded=True) == feed


def test_short_ws_tiles_start_every_max_rows_cols_cycles():
    """A ws array tile shorter than rows + cols - 1 lasts max(rows, cols) cycles: the next
    tile's weight window runs on into the tile after (or into the next compute, when it
    preloads that one's weights). Not on a streaming compute: its stalls would delay the
    window past the switch."""
    plain = Instruction(compute=Compute(outer=1, inner=8, length=1))
    assert tile_period(WS, plain) == 3
    assert tile_period(WS, replace(plain, preload_next=True)) == 3
    assert tile_period(WS, replace(plain, stream=True)) == 4
    assert tile_period(replace(WS, rows=2, cols=5), plain) == 5
    assert tile_period(replace(WS, rows=1, cols=1), plain) == 2
    assert tile_period(OS, plain) == 2
    assert feed_cycles(WS, plain) == prologue_length(WS) + 8 * 3
    # the GEMV of the RTL test below computes on such tiles, preloading across instructions
    program = build_program(WS, GEMV_GEMM, GEMV_MAPPING.fit_to(WS, GEMV_GEMM))
    computes = [i for i in program.instructions if i.compute is not None]
    assert computes and all(tile_period(WS, i) == 3 for i in computes)
    assert any(i.preload_next or i.preload_next_when_loaded for i in computes)


GUARD_GEMM = Gemm(m=23, n=2 * WS.cols + 1, k=2 * WS.rows)
GUARD_MAPPING = Mapping(tile_m=5, tile_n=WS.cols, tile_k=WS.rows, order="nmk")


def test_feeder_guard_lasts_a_drain():
    """Each compute keeps the feeder busy at least as long as a drain after the last feed
    (os: 2 rows + cols, with the shadow shift-out; ws: rows + cols), so at most one drain is
    outstanding at the next dispatch; the hardware's guard counter is the model's."""
    short = Instruction(compute=Compute(outer=1, inner=1, length=1))
    assert feed_cycles(WS, short, preloaded=True) == WS.rows + WS.cols == feeder_guard(WS)
    assert feed_cycles(OS, short) == 2 * OS.rows + OS.cols == feeder_guard(OS)
    # the RTL test below runs computes that the ws guard holds (one tile of 5 rows)
    program = build_program(WS, GUARD_GEMM, GUARD_MAPPING.fit_to(WS, GUARD_GEMM))
    held = [i for i in program.instructions if i.compute is not None
            and i.compute.array_tiles * tile_period(WS, i) < feeder_guard(WS)]
    assert len(held) >= 2


def _jobs(params: SystolicParams, rng: np.random.Generator) -> list:
    R, C = params.rows, params.cols
    shapes: list[tuple[Gemm, Mapping]] = []
    if params.dataflow == "ws":
        shapes.append((REUSE_GEMM, REUSE_MAPPING))
        shapes.append((GEMV_GEMM, GEMV_MAPPING))
        shapes.append((GUARD_GEMM, GUARD_MAPPING))
        shapes += SPLIT_WS_SHAPES
        for _ in range(4):
            gemm = Gemm(m=int(rng.integers(1, 40)), n=int(rng.integers(1, 3 * C + 1)),
                        k=int(rng.integers(1, 3 * R + 1)))
            shapes.append((gemm, Mapping(tile_m=int(rng.integers(1, 12)),
                                         tile_n=C * int(rng.integers(1, 3)),
                                         tile_k=R * int(rng.integers(1, 3)),
                                         order=str(rng.choice(["mnk", "nmk"])))))
    else:
        shapes.append((Gemm(m=1, n=1, k=1), Mapping(tile_m=R, tile_n=C, tile_k=1)))
        for _ in range(4):
            gemm = Gemm(m=int(rng.integers(1, 4 * R)), n=int(rng.integers(1, 4 * C)),
                        k=int(rng.integers(1, 30)))
            shapes.append((gemm, Mapping(tile_m=R, tile_n=C, tile_k=int(rng.integers(1, 9)),
                                         order=str(rng.choice(["mnk", "nmk"])))))
    jobs = []
    for gemm, mapping in shapes:
        a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
        jobs.append((gemm, mapping, a, b))
    return jobs


def _run_exact(params: SystolicParams, jobs: list, tmp_path) -> list[int]:
    sim = rtl_module.RtlSimulator(params, workdir=tmp_path)
    runs = sim.run(jobs)
    cycles = []
    for (gemm, mapping, a, b), run in zip(jobs, runs, strict=True):
        where = f"seed={SEED} {params.name} {gemm} {mapping}"
        assert run.c is not None
        assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=params.acc_bits)), where
        model = model_gemm(params, gemm, mapping)
        assert run.cycles == model.cycles, (where, run.cycles, model.cycles)
        assert run.actions == model.actions, where
        cycles.append(run.cycles)
    return cycles


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_ws_3x2")
def test_ws_preload_and_split_ends_rtl_equal_model(tmp_path, monkeypatch):
    print(f"HWLOOP_SEED={SEED}")
    rng = np.random.default_rng(SEED)
    jobs = _jobs(WS, rng)
    _run_exact(WS, jobs, tmp_path / "default")  # split ends where faster, preloads
    # plain tile loops with all, only static, and no preload flags: the hardware pays the
    # prologues again exactly as the model says (REUSE: static preloads, DYN: when loaded)
    original = harness_module.build_program

    def plain(variant: str):
        def build(params, gemm, mapping, out_shift=0):
            program = original(params, gemm, mapping, split_ends=False, out_shift=out_shift)
            if variant != "all":
                program.instructions = _without_preloads(program.instructions,
                                                         static=variant == "none")
            return program
        return build

    pair = [jobs[0], (DYN_GEMM, DYN_MAPPING, *random_operands(DYN_GEMM, in_bits=WS.in_bits,
                                                                  rng=rng))]
    cycles = {}
    for variant in ("all", "static", "none"):
        monkeypatch.setattr(harness_module, "build_program", plain(variant))
        runs = rtl_module.RtlSimulator(WS, workdir=tmp_path / variant).run(pair)
        for (gemm, mapping, a, b), run in zip(pair, runs, strict=True):
            assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=WS.acc_bits))
            program = plain(variant)(WS, gemm, mapping.fit_to(WS, gemm))
            assert run.cycles == program_cycles(WS, program.instructions)[0], (variant, gemm)
        cycles[variant] = [run.cycles for run in runs]
    assert cycles["none"][0] - cycles["all"][0] == 4 * prologue_length(WS)  # REUSE: static only
    assert cycles["static"][0] == cycles["all"][0]
    assert cycles["static"][1] > cycles["all"][1]  # DYN: when-loaded preloads taken
    assert cycles["none"][1] == cycles["static"][1]


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_os_2x3")
def test_os_dispatch_rtl_equals_model(tmp_path):
    print(f"HWLOOP_SEED={SEED}")
    rng = np.random.default_rng(SEED)
    _run_exact(OS, _jobs(OS, rng), tmp_path)


def test_ahead_marks_pairs_and_is_kept_only_where_faster():
    """``mark_ahead``: an ahead instruction loads A only and the next one follows it, reading
    those rows from the load's first row on (ws: one n block; os: one array tile); the
    builder keeps the marks exactly where the model says they are faster."""
    print(f"HWLOOP_SEED={SEED}")
    rng = np.random.default_rng(SEED + 2)
    marked = kept = 0
    for plain_design, gemm, mapping in _random_layers(rng, m_max=200, n_max=60, k_max=120):
        if marked >= 40:
            break
        assert mark_ahead(plain_design, build_program(plain_design, gemm, mapping).instructions) \
            == build_program(plain_design, gemm, mapping).instructions  # no hardware for it
        params = replace(plain_design, read_ahead=True)
        plain = build_program(params, gemm, mapping, ahead=False)
        forced = build_program(params, gemm, mapping, ahead=True)
        chosen = build_program(params, gemm, mapping)
        instrs = forced.instructions
        for cur, nxt in zip(instrs, instrs[1:], strict=False):
            assert cur.ahead == nxt.follow
            if cur.ahead:
                c = nxt.compute
                assert cur.load_a is not None and cur.load_b is None and not nxt.stream
                assert c is not None and c.outer == 1 and c.a_base == cur.load_a.spad_base
                if params.dataflow == "os":
                    assert c.inner == 1
        assert not instrs[-1].ahead and not instrs[0].follow
        if not any(i.ahead for i in instrs):
            assert chosen.instructions == plain.instructions
            continue
        marked += 1
        plain_cycles = program_cycles(params, plain.instructions, actions=False)[0]
        forced_cycles = program_cycles(params, instrs, actions=False)[0]
        assert chosen.cycles == min(plain_cycles, forced_cycles)
        kept += forced_cycles < plain_cycles
        assert chosen.instructions == (instrs if forced_cycles < plain_cycles
                                       else plain.instructions)
    assert marked >= 40 and 0 < kept < marked, (marked, kept)


def test_the_ws_prologue_overlaps_the_first_tile():
    """Row r of the first weights is needed only when the first A row reaches PE row r, so
    the prologue takes one cycle; the rows after it load in the first tile's first slots, which
    must end before the tile's window opens at slot cols-1 (more cycles when cols < rows)."""
    assert [prologue_length(replace(WS, rows=r, cols=c))
            for r, c in ((1, 1), (4, 4), (2, 5), (3, 2), (8, 4), (16, 16))] == [1, 1, 1, 2, 5, 1]
    instr = Instruction(compute=Compute(outer=1, inner=1, length=40))
    assert feed_cycles(replace(WS, rows=8, cols=8), instr) == 1 + 40


@pytest.mark.rtl
@pytest.mark.parametrize("params,gemm,mapping", [
    (SystolicParams(rows=6, cols=5, dataflow="ws", in_bits=4, acc_bits=16, ifmap_kib=4,
                    weight_kib=4, acc_kib=4, bus_bytes=4, mem_latency=21),
     Gemm(m=33, n=6, k=9), Mapping(tile_m=29, tile_n=10, tile_k=12, order="nmk")),
    (SystolicParams(rows=4, cols=5, dataflow="ws", in_bits=8, acc_bits=16, ifmap_kib=4,
                    weight_kib=4, acc_kib=4, bus_bytes=1, mem_latency=38),
     Gemm(m=10, n=20, k=27), Mapping(tile_m=10, tile_n=10, tile_k=8, order="mnk")),
], ids=["6x5", "4x5"])
def test_a_streaming_ws_compute_keeps_its_whole_prologue(params, gemm, mapping, tmp_path):
    """A streaming compute's first tile waits for its A rows while slot 0's A runs on through
    the skew, so weights loaded in its slots would come too late: its prologue keeps ``rows``
    cycles (random designs found both; the overlapped prologue gave wrong sums)."""
    print(f"HWLOOP_SEED={SEED}")
    fitted = mapping.fit_to(params, gemm)
    assert any(i.stream for i in build_program(params, gemm, fitted).instructions)
    a, b = random_operands(gemm, in_bits=params.in_bits, rng=np.random.default_rng(SEED))
    _run_exact(params, [(gemm, mapping, a, b)], tmp_path)
