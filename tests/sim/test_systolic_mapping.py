"""Mapping validation, the default chooser, golden wrap semantics, model and program sanity."""

from __future__ import annotations

import numpy as np
import pytest

from hwloop.errors import ParameterError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.golden import gemm_golden, random_operands, wrap
from hwloop.sim.systolic.mapping import (
    ORDERS,
    Gemm,
    Mapping,
    check_mapping,
    default_mapping,
    tile_rows,
)
from hwloop.sim.systolic.model import ACTIONS, model_gemm
from hwloop.sim.systolic.program import FIELD_BITS, FIELDS, build_program, encode


def test_scratchpad_capacity_message():
    params = SystolicParams(rows=8, cols=8, ifmap_kib=32)
    gemm = Gemm(m=64, n=64, k=512)
    with pytest.raises(ParameterError) as err:
        check_mapping(params, gemm, Mapping(tile_m=64, tile_n=8, tile_k=512, order="mnk"))
    assert str(err.value) == (
        "mapping tile_m=64 tile_k=512 needs 64 KiB of ifmap scratchpad (double-buffered), "
        "have 32")


def test_weight_and_accumulator_capacity_messages():
    params = SystolicParams(rows=4, cols=4, weight_kib=1, acc_kib=1)
    with pytest.raises(ParameterError) as err:
        check_mapping(params, Gemm(m=4, n=64, k=64), Mapping(tile_m=4, tile_n=64, tile_k=64))
    assert str(err.value) == (
        "mapping tile_k=64 tile_n=64 needs 8 KiB of weight scratchpad (double-buffered), have 1")
    with pytest.raises(ParameterError) as err:
        check_mapping(params, Gemm(m=64, n=16, k=4), Mapping(tile_m=64, tile_n=16, tile_k=4))
    assert str(err.value) == (
        "mapping tile_m=64 tile_n=16 needs 8 KiB of accumulator scratchpad (double-buffered), "
        "have 1")


def test_granule_messages():
    os_params = SystolicParams(rows=8, cols=4)
    with pytest.raises(ParameterError) as err:
        check_mapping(os_params, Gemm(m=64, n=64, k=64), Mapping(tile_m=10, tile_n=8, tile_k=8))
    assert str(err.value) == "mapping tile_m=10 must be a multiple of rows=8 on the os dataflow"
    ws_params = SystolicParams(rows=8, cols=4, dataflow="ws")
    with pytest.raises(ParameterError) as err:
        check_mapping(ws_params, Gemm(m=64, n=64, k=64), Mapping(tile_m=10, tile_n=8, tile_k=12))
    assert str(err.value) == "mapping tile_k=12 must be a multiple of rows=8 on the ws dataflow"


def test_mapping_field_errors():
    with pytest.raises(ParameterError, match=r"^mapping order must be one of mnk, nmk, not 'kmn'$"):
        Mapping(tile_m=8, tile_n=8, tile_k=8, order="kmn")
    with pytest.raises(ParameterError, match=r"^mapping tile_k must be a positive integer, not 0$"):
        Mapping(tile_m=8, tile_n=8, tile_k=0)
    with pytest.raises(ParameterError, match=r"^unknown mapping field 'tile_x'$"):
        Mapping.from_dict({"tile_m": 8, "tile_n": 8, "tile_k": 8, "tile_x": 1})
    with pytest.raises(ParameterError, match=r"^gemm k must be a positive integer, not -1$"):
        Gemm(m=1, n=1, k=-1)


def test_fit_to_rounds_and_clips():
    params = SystolicParams(rows=4, cols=8)
    fitted = Mapping(tile_m=5, tile_n=100, tile_k=7, order="nmk").fit_to(params, Gemm(m=9, n=20,
                                                                                     k=5))
    assert fitted == Mapping(tile_m=8, tile_n=24, tile_k=5, order="nmk")
    ws = SystolicParams(rows=4, cols=8, dataflow="ws")
    assert Mapping(tile_m=5, tile_n=8, tile_k=5).fit_to(ws, Gemm(m=3, n=8, k=30)) == \
        Mapping(tile_m=3, tile_n=8, tile_k=8)
    mapping = Mapping(tile_m=8, tile_n=16, tile_k=32, order="nmk")
    assert Mapping.from_dict(mapping.to_dict()) == mapping


@pytest.mark.parametrize("dataflow", ["os", "ws"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 3), (64, 64, 64), (100, 30, 700),
                                   (512, 768, 3072)])
def test_default_mapping_fits(dataflow, shape):
    params = SystolicParams(rows=8, cols=4, dataflow=dataflow, ifmap_kib=8, weight_kib=8,
                            acc_kib=8)
    gemm = Gemm(m=shape[0], n=shape[1], k=shape[2])
    mapping = default_mapping(params, gemm)
    check_mapping(params, gemm, mapping)
    assert mapping.order in ORDERS
    ifmap, weight, acc = tile_rows(params, mapping)
    assert ifmap * params.rows <= params.ifmap_kib * 512  # half of the ifmap scratchpad
    assert acc * params.cols * 4 <= params.acc_kib * 512


def test_golden_wraps_like_twos_complement():
    a = np.array([[127, 127]], dtype=np.int64)
    b = np.array([[127], [127]], dtype=np.int64)
    assert gemm_golden(a, b, acc_bits=16)[0, 0] == 32258
    assert gemm_golden(a, b, acc_bits=15)[0, 0] == 32258 - 32768
    assert gemm_golden(a, b, acc_bits=8)[0, 0] == wrap(np.array(32258), 8)
    assert wrap(np.array([255, 128, 127, -129]), 8).tolist() == [-1, -128, 127, 127]
    big = np.full((1, 4), -(1 << 15), dtype=np.int64)
    assert gemm_golden(big, big.T, acc_bits=64)[0, 0] == 4 << 30


def test_random_operands_cover_the_signed_range():
    rng = np.random.default_rng(0)
    a, b = random_operands(Gemm(m=50, n=40, k=30), in_bits=3, rng=rng)
    assert a.shape == (50, 30) and b.shape == (30, 40)
    assert a.min() == -4 and a.max() == 3 and b.min() == -4 and b.max() == 3


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_model_sanity(dataflow):
    params = SystolicParams(rows=8, cols=8, dataflow=dataflow)
    gemm = Gemm(m=64, n=64, k=64)
    run = model_gemm(params, gemm, default_mapping(params, gemm))
    assert set(run.actions) == set(ACTIONS)
    assert run.actions["mac"] >= gemm.macs
    assert run.cycles >= gemm.macs // 64  # never faster than every PE busy every cycle
    assert run.actions["dram_write_bytes"] == 64 * 64 * 4
    # twice the work in k takes longer
    longer = model_gemm(params, Gemm(m=64, n=64, k=128), default_mapping(params, gemm))
    assert longer.cycles > run.cycles


def test_program_structure_and_encoding():
    params = SystolicParams(rows=4, cols=4)
    gemm = Gemm(m=8, n=8, k=10)
    mapping = Mapping(tile_m=4, tile_n=4, tile_k=4).fit_to(params, gemm)
    program = build_program(params, gemm, mapping)
    steps = 2 * 2 * 3
    assert len(program.instructions) == steps + 2
    assert sum(i.compute is not None for i in program.instructions) == steps
    assert sum(i.store_c is not None for i in program.instructions) == 4
    assert program.instructions[0].compute is None and program.instructions[-1].load_a is None
    word = encode(program.instructions[1])
    flags = word & ((1 << FIELD_BITS) - 1)
    assert flags & 1 and flags & 16  # computes, and it is the first k step
    length = (word >> (FIELD_BITS * FIELDS.index("c_length"))) & ((1 << FIELD_BITS) - 1)
    assert length == 4


def test_rtl_rejects_bad_operands_before_building(tmp_path):
    from hwloop.sim.systolic.rtl import RtlSimulator

    params = SystolicParams(rows=2, cols=2, in_bits=4, acc_bits=16)
    gemm = Gemm(m=2, n=2, k=2)
    sim = RtlSimulator(params, workdir=tmp_path)
    sim._build_path = tmp_path  # never reached: the job is rejected first
    a = np.array([[1, 8], [0, 0]])
    b = np.zeros((2, 2), dtype=np.int64)
    mapping = Mapping(tile_m=2, tile_n=2, tile_k=2)
    with pytest.raises(ParameterError) as err:
        sim.run([(gemm, mapping, a, b)])
    assert str(err.value) == "job 0: A has values outside the signed 4-bit range -8..7"
    with pytest.raises(ParameterError) as err:
        sim.run([(gemm, mapping, b, np.zeros((3, 2), dtype=np.int64))])
    assert str(err.value) == ("job 0: operands (2, 2) x (3, 2) do not match gemm m=2 n=2 k=2")


@pytest.mark.parametrize("params", [
    # ws: one acc half holds 4 rows of 16 64-bit sums, so tile_m <= 4
    SystolicParams(rows=16, cols=16, dataflow="ws", in_bits=8, acc_bits=64, acc_kib=1),
    # os: one weight half holds 4 rows of 64 16-bit weights, so tile_k <= 4
    SystolicParams(rows=8, cols=64, dataflow="os", in_bits=16, acc_bits=32, weight_kib=1),
], ids=["ws-tile_m", "os-tile_k"])
def test_default_mapping_below_eight_steps(params):
    """Where the dimension without an array granule (ws m, os k) fits only fewer than 8 steps
    per tile, the chooser takes such a tile; it tried 8 and up only and said no mapping fits."""
    gemm = Gemm(m=100, n=100, k=100)
    mapping = default_mapping(params, gemm)
    check_mapping(params, gemm, mapping)
    assert (mapping.tile_m if params.dataflow == "ws" else mapping.tile_k) == 4
