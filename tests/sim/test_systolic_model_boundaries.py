"""Model == RTL exactly on layers that sit on one of the model's timing boundaries, where an
off-by-one in the model changes the cycles (found by mutating the model: the broader random
tests did not reach them). Bit-exact against the golden GEMM.

The seed is printed and can be set with HWLOOP_SEED.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic import model as model_module
from hwloop.sim.systolic.golden import gemm_golden, random_operands
from hwloop.sim.systolic.mapping import Gemm, Mapping
from hwloop.sim.systolic.model import model_gemm, program_cycles
from hwloop.sim.systolic.program import build_program
from hwloop.sim.systolic.rtl import RtlSimulator

SEED = int(os.environ.get("HWLOOP_SEED", "1234"))

# the default ws test design of test_systolic_rtl.py (same build, same xdist group)
WS = SystolicParams(rows=3, cols=2, dataflow="ws", in_bits=4, acc_bits=10, ifmap_kib=4,
                    weight_kib=4, acc_kib=4, bus_bytes=2, mem_latency=5)

# (design, layer, mapping): a weight load written in exactly the cycle the last tile's preload
# window opens (``preloads_next``: loads_done + 1 == window), so the next compute's weights
# are preloaded
PRELOAD_ON_TIME = [
    (WS, Gemm(m=21, n=4, k=28), Mapping(tile_m=8, tile_n=4, tile_k=12, order="nmk")),
    (replace(WS, read_ahead=True), Gemm(m=17, n=1, k=26),
     Mapping(tile_m=11, tile_n=2, tile_k=12, order="nmk")),
    (replace(WS, read_ahead=True), Gemm(m=25, n=3, k=28),
     Mapping(tile_m=11, tile_n=4, tile_k=9, order="mnk")),
]


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_ws_3x2")
def test_weights_written_as_the_preload_window_opens_are_preloaded(tmp_path, monkeypatch):
    print(f"HWLOOP_SEED={SEED}")
    rng = np.random.default_rng(SEED)
    on_time = 0
    real = model_module.preloads_next

    def watch(params, instr, dispatch, loads_done, preloaded, window=None):
        nonlocal on_time
        taken = real(params, instr, dispatch, loads_done, preloaded, window)
        if taken and not instr.preload_next and instr.preload_next_when_loaded:
            # taken, but not one cycle later: the load was written exactly in time
            later = real(params, instr, dispatch, loads_done + 1, preloaded, window)
            on_time += not later
        return taken

    for params, gemm, mapping in PRELOAD_ON_TIME:
        where = f"seed={SEED} {params.name} {gemm} {mapping}"
        on_time = 0
        with monkeypatch.context() as patch:
            patch.setattr(model_module, "preloads_next", watch)
            model = model_gemm(params, gemm, mapping)
        assert on_time > 0, where  # the layer is on the boundary
        a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
        (run,) = RtlSimulator(params, workdir=tmp_path / params.name).run(
            [(gemm, mapping, a, b)])
        assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=params.acc_bits)), where
        assert (run.cycles, run.actions) == (model.cycles, model.actions), where


def test_walk_jumps_tell_preloaded_states_apart():
    """The walk jumps only between states equal in everything the following instructions'
    timing depends on, also whether the weights were preloaded (``_Walk.key``): on this layer
    two dispatches differ only in that, and the jumping walk still equals the stepwise one."""
    params = SystolicParams(rows=8, cols=8, dataflow="ws", ifmap_kib=8, weight_kib=8,
                            acc_kib=8, bus_bytes=16, mem_latency=18)
    gemm = Gemm(m=175, n=89, k=105)
    mapping = Mapping(tile_m=32, tile_n=24, tile_k=8, order="mnk").fit_to(params, gemm)
    instrs = build_program(params, gemm, mapping, split_ends=False).instructions
    w = model_module._Walk()
    keys: dict[tuple, set[bool]] = {}
    for instr in instrs:
        unloaded = w.copy()
        unloaded.preloaded = False
        keys.setdefault(unloaded.key(params), set()).add(w.preloaded)
        model_module._step(params, instr, w)
    assert any(len(seen) == 2 for seen in keys.values())  # the layer needs the distinction
    assert program_cycles(params, instrs)[0] == w.cycles + model_module.DONE_CYCLES == 31698


# the default os test design of test_systolic_rtl.py
OS = SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32, ifmap_kib=4,
                    weight_kib=4, acc_kib=4, mem_latency=3)

# (design, layer, mapping): an os compute dispatched less than ``rows - length`` cycles after
# the previous tile's last feed, whose first tile waits (``feed_stall`` > 0)
FEED_STALLS = [
    (OS, Gemm(m=7, n=13, k=7), Mapping(tile_m=8, tile_n=3, tile_k=3, order="nmk")),
    (OS, Gemm(m=10, n=4, k=11), Mapping(tile_m=6, tile_n=6, tile_k=5, order="nmk")),
    (replace(OS, read_ahead=True), Gemm(m=15, n=1, k=4),
     Mapping(tile_m=8, tile_n=3, tile_k=3, order="nmk")),
]


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_os_2x3")
def test_os_feed_stalls_after_a_short_tile(tmp_path, monkeypatch):
    print(f"HWLOOP_SEED={SEED}")
    rng = np.random.default_rng(SEED)
    real = model_module.feed_stall
    stalls: list[int] = []

    def watch(params, c, since_last):
        stall = real(params, c, since_last)
        stalls.append(stall)
        return stall

    for params, gemm, mapping in FEED_STALLS:
        where = f"seed={SEED} {params.name} {gemm} {mapping}"
        stalls.clear()
        with monkeypatch.context() as patch:
            patch.setattr(model_module, "feed_stall", watch)
            model = model_gemm(params, gemm, mapping)
        assert max(stalls) > 0, where  # the layer stalls a feed
        a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
        (run,) = RtlSimulator(params, workdir=tmp_path / params.name).run(
            [(gemm, mapping, a, b)])
        assert np.array_equal(run.c, gemm_golden(a, b, acc_bits=params.acc_bits)), where
        assert (run.cycles, run.actions) == (model.cycles, model.actions), where
