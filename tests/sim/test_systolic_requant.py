"""Requantized write-back (``out_bits``): golden semantics, the default shift, the model's store
cost, and the RTL bit-exact against the golden model with the model's cycles and counters.

Stimulus is random; the seed is printed and can be set with HWLOOP_SEED.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import replace

import numpy as np
import pytest

from hwloop.errors import ParameterError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.golden import (
    default_out_shift,
    gemm_golden,
    random_operands,
    requantize,
    resolve_out_shift,
    stored_golden,
)
from hwloop.sim.systolic.mapping import Gemm, Mapping, default_mapping, out_bytes
from hwloop.sim.systolic.model import model_gemm
from hwloop.sim.systolic.program import FIELD_BITS, FIELDS, build_program, encode
from hwloop.sim.systolic.rtl import RtlSimulator
from hwloop.workloads import Layer, Workload

SEED = int(os.environ.get("HWLOOP_SEED", "4321"))
evaluate_module = importlib.import_module("hwloop.sim.evaluate")

OS8 = SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32, ifmap_kib=4,
                     weight_kib=4, acc_kib=4, bus_bytes=2, mem_latency=3, out_bits=8)
# odd widths: 5-bit outputs of 10-bit wrapping sums, bit-packed C rows
WS5 = SystolicParams(rows=3, cols=2, dataflow="ws", in_bits=4, acc_bits=10, ifmap_kib=4,
                     weight_kib=4, acc_kib=4, bus_bytes=2, mem_latency=5, out_bits=5)


# ---- golden ------------------------------------------------------------------------------------

def test_requantize_rounds_half_up_with_arithmetic_shift():
    x = np.array([6, -6, -2, -3, 5, -10, 2, -1, 0])
    # x / 4 = 1.5, -1.5, -0.5, -0.75, 1.25, -2.5, 0.5, -0.25, 0: halves go up
    assert requantize(x, shift=2, out_bits=8).tolist() == [2, -1, 0, -1, 1, -2, 1, 0, 0]
    assert requantize(np.array([3, -3, 1, -1]), shift=1, out_bits=8).tolist() == [2, -1, 1, 0]


def test_requantize_saturates_both_ways():
    x = np.array([100, -100, 29, 30, -34, -35])
    # / 4 rounded: 25, -25, 7 (7.25), 8 (7.5), -8 (-8.5 -> -8), -9 (-8.75); 4 bits: -8..7
    assert requantize(x, shift=2, out_bits=4).tolist() == [7, -8, 7, 7, -8, -8]


def test_requantize_shift_zero_is_saturation_only():
    x = np.array([7, 8, -8, -9, 0, -1])
    assert requantize(x, shift=0, out_bits=4).tolist() == [7, 7, -8, -8, 0, -1]


def test_requantize_64_bit_sums_do_not_overflow():
    top, bottom = (1 << 63) - 1, -(1 << 63)
    x = np.array([top, bottom], dtype=np.int64)
    assert requantize(x, shift=1, out_bits=64).tolist() == [1 << 62, -(1 << 62)]
    assert requantize(x, shift=63, out_bits=64).tolist() == [1, -1]
    assert requantize(x, shift=62, out_bits=2).tolist() == [1, -2]


def test_default_shift_keeps_three_sigma_inside_out_bits():
    p8 = SystolicParams(out_bits=8)
    # 2*8 - 1 + ceil(log2(k)/2) - 8
    assert [default_out_shift(p8, Gemm(m=1, n=1, k=k)) for k in (1, 2, 4, 5, 16, 17, 64)] \
        == [7, 8, 8, 9, 9, 10, 10]
    assert default_out_shift(SystolicParams(), Gemm(m=1, n=1, k=64)) == 0  # no out_bits
    low = SystolicParams(in_bits=4, acc_bits=10, out_bits=10)
    assert default_out_shift(low, Gemm(m=1, n=1, k=1)) == 0  # never negative
    wide = SystolicParams(in_bits=16, acc_bits=32, out_bits=2)
    assert default_out_shift(wide, Gemm(m=1, n=1, k=1 << 20)) == 31  # at most acc_bits - 1
    # random full-range operands: outputs are spread, not mostly saturated or zero
    rng = np.random.default_rng(SEED)
    gemm = Gemm(m=64, n=64, k=300)
    a, b = random_operands(gemm, in_bits=8, rng=rng)
    c = stored_golden(a, b, p8, shift=default_out_shift(p8, gemm))
    assert np.mean((c == 127) | (c == -128)) < 0.01
    assert np.std(c) > 10


def test_shift_validation_messages():
    gemm = Gemm(m=2, n=2, k=2)
    with pytest.raises(ParameterError) as info:
        resolve_out_shift(OS8, gemm, 32)
    assert str(info.value) == "out_shift must be an integer in 0..31, not 32"
    with pytest.raises(ParameterError) as info:
        resolve_out_shift(OS8, gemm, -1)
    assert str(info.value) == "out_shift must be an integer in 0..31, not -1"
    with pytest.raises(ParameterError) as info:
        resolve_out_shift(SystolicParams(), gemm, 3)
    assert str(info.value) == ("out_shift needs a design with out_bits (systolic_8x8_os_i8a32 "
                               "writes back the raw sums)")
    assert resolve_out_shift(OS8, gemm, None) == default_out_shift(OS8, gemm)
    assert resolve_out_shift(SystolicParams(), gemm, None) == 0


# ---- program and model -------------------------------------------------------------------------

def test_stores_carry_the_shift_in_s_shift():
    gemm = Gemm(m=5, n=7, k=9)
    program = build_program(OS8, gemm, default_mapping(OS8, gemm), out_shift=6)
    stores = [i.store_c for i in program.instructions if i.store_c is not None]
    assert stores and all(t.shift == 6 for t in stores)
    at = FIELDS.index("s_shift")
    for instr in program.instructions:
        field = (encode(instr) >> (at * FIELD_BITS)) & ((1 << FIELD_BITS) - 1)
        assert field == (6 if instr.store_c is not None else 0)


def test_out_bytes_containers():
    assert [out_bytes(SystolicParams(acc_bits=64, out_bits=b)) for b in (2, 8, 9, 16, 17, 32,
                                                                         33, 64)] \
        == [1, 1, 2, 2, 4, 4, 8, 8]
    assert out_bytes(SystolicParams()) == 4 and out_bytes(SystolicParams(acc_bits=40)) == 8


def test_model_writes_a_quarter_of_the_bytes_and_is_not_slower():
    """The write-bound tall ws layer on 16x16 with a 32-byte bus (the reason for out_bits)."""
    raw = SystolicParams(rows=16, cols=16, dataflow="ws", bus_bytes=32)
    int8 = replace(raw, out_bits=8)
    gemm = Gemm(m=256, n=16, k=32)
    mapping = default_mapping(raw, gemm)
    before, after = model_gemm(raw, gemm, mapping), model_gemm(int8, gemm, mapping)
    assert before.actions["dram_write_bytes"] == 4 * after.actions["dram_write_bytes"] \
        == 4 * 256 * 16
    assert {k: v for k, v in before.actions.items() if k != "dram_write_bytes"} \
        == {k: v for k, v in after.actions.items() if k != "dram_write_bytes"}
    assert after.cycles < before.cycles


# ---- RTL ---------------------------------------------------------------------------------------

def _jobs(params: SystolicParams, rng: np.random.Generator):
    R, C = params.rows, params.cols
    shapes = [Gemm(m=1, n=1, k=1), Gemm(m=2 * R + 1, n=2 * C + 1, k=7),
              Gemm(m=int(rng.integers(1, 4 * R + 2)), n=int(rng.integers(1, 4 * C + 2)),
                   k=int(rng.integers(1, 40)))]
    saturating = 1  # tiny shift: most outputs clip at both ends
    shifts = [None, 0, saturating, params.acc_bits - 1, int(rng.integers(0, params.acc_bits))]
    jobs, job_shifts = [], []
    for i, gemm in enumerate(shapes):
        for j, shift in enumerate(shifts):
            if params.dataflow == "os":
                small = Mapping(tile_m=R, tile_n=C, tile_k=int(rng.integers(1, 6)), order="nmk")
            else:
                small = Mapping(tile_m=int(rng.integers(1, 6)), tile_n=C, tile_k=R, order="nmk")
            mapping = default_mapping(params, gemm) if (i + j) % 2 == 0 else small
            a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
            jobs.append((gemm, mapping, a, b))
            job_shifts.append(shift)
    return jobs, job_shifts


@pytest.mark.rtl
@pytest.mark.parametrize("params", [
    pytest.param(OS8, id="os-o8", marks=pytest.mark.xdist_group("systolic_os_2x3_o8")),
    pytest.param(WS5, id="ws-o5", marks=pytest.mark.xdist_group("systolic_ws_3x2_o5")),
])
def test_rtl_requantized_bit_exact_and_model_exact(params, tmp_path):
    print(f"HWLOOP_SEED={SEED} design={params.name}")
    rng = np.random.default_rng(SEED)
    jobs, shifts = _jobs(params, rng)
    runs = RtlSimulator(params, workdir=tmp_path).run(jobs, out_shifts=shifts)
    saturated = 0
    lo, hi = -(1 << (params.out_bits - 1)), (1 << (params.out_bits - 1)) - 1
    for (gemm, mapping, a, b), shift, run in zip(jobs, shifts, runs, strict=True):
        used = run.extra["out_shift"]
        assert used == (default_out_shift(params, gemm) if shift is None else shift)
        where = f"seed={SEED} {params.name} {gemm} {mapping} shift={used}"
        gold = stored_golden(a, b, params, shift=used)
        assert np.array_equal(gold, requantize(gemm_golden(a, b, acc_bits=params.acc_bits),
                                               shift=used, out_bits=params.out_bits))
        assert run.c is not None and run.c.shape == gold.shape, where
        assert np.array_equal(run.c, gold), (where, run.c, gold)
        model = model_gemm(params, gemm, mapping)
        assert model.cycles == run.cycles, (where, model.cycles, run.cycles)
        assert run.actions == model.actions, where
        assert run.actions["dram_write_bytes"] == gemm.m * -(-gemm.n // params.cols) \
            * params.cols * out_bytes(params), where
        if used == 1:
            saturated += int(np.count_nonzero((gold == lo) | (gold == hi)))
    assert saturated > 0  # the saturating shift did clip


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_os_2x3_o8")
def test_evaluate_rtl_records_the_shift_per_layer(monkeypatch, tmp_path):
    from hwloop.sim.area import AreaResult

    fixed = AreaResult(area=1.0, area_cells=1, sram_bits=1, cell_counts={}, synth_s=0.0,
                       cached=True)
    monkeypatch.setattr(importlib.import_module("hwloop.sim.area"), "cached_area",
                        lambda params, **_: fixed)
    work = Workload("w", (Layer(name="x", m=5, n=4, k=9), Layer(name="y", m=3, n=7, k=70)))
    auto = evaluate_module.evaluate(OS8, work, fidelity="rtl", seed=SEED, reuse=False,
                                    workdir=tmp_path / "auto")
    assert auto.bit_exact is True
    assert [x.out_shift for x in auto.layers] == [default_out_shift(OS8, Gemm(m=5, n=4, k=9)),
                                                  default_out_shift(OS8, Gemm(m=3, n=7, k=70))]
    fixed_shift = evaluate_module.evaluate(OS8, work, fidelity="rtl", seed=SEED, reuse=False,
                                           workdir=tmp_path / "fixed", out_shift=4)
    assert fixed_shift.bit_exact is True and [x.out_shift for x in fixed_shift.layers] == [4, 4]
    model = evaluate_module.evaluate(OS8, work, fidelity="model", out_shift=4)
    assert model.cycles == fixed_shift.cycles and [x.out_shift for x in model.layers] == [4, 4]
    raw = evaluate_module.evaluate(replace(OS8, out_bits=None), work, fidelity="model")
    assert [x.out_shift for x in raw.layers] == [None, None]
    with pytest.raises(ParameterError, match=r"^out_shift needs a design with out_bits"):
        evaluate_module.evaluate(replace(OS8, out_bits=None), work, fidelity="model",
                                 out_shift=2)
