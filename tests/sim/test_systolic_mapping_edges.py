"""Mapping checks at their exact boundaries, on arrays whose rows and cols differ (so a granule
taken from the wrong side shows), and the default chooser's tie-break."""

from __future__ import annotations

import pytest

from hwloop.errors import ParameterError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.mapping import Gemm, Mapping, check_mapping, default_mapping, tile_rows
from hwloop.sim.systolic.model import model_gemm

# 1 KiB each: ifmap rows of 8 B (64 rows a half), weight rows of 4 B (128), acc rows of 16 B (32)
OS_8X4 = SystolicParams(rows=8, cols=4, dataflow="os", ifmap_kib=1, weight_kib=1, acc_kib=1)
# ifmap rows of 4 B (128 rows a half), weight rows of 8 B (64), acc rows of 32 B (16)
WS_4X8 = SystolicParams(rows=4, cols=8, dataflow="ws", ifmap_kib=1, weight_kib=1, acc_kib=1)
BIG = Gemm(m=256, n=256, k=256)


@pytest.mark.parametrize(("params", "mapping", "rows"), [
    # os: ifmap (tile_m/rows)*tile_k, weight (tile_n/cols)*tile_k, acc (tile_n/cols)*tile_m
    (OS_8X4, Mapping(tile_m=16, tile_n=8, tile_k=32), (64, 64, 32)),
    (OS_8X4, Mapping(tile_m=8, tile_n=8, tile_k=64), (64, 128, 16)),
    # ws: ifmap (tile_k/rows)*tile_m, weight (tile_n/cols)*tile_k, acc (tile_n/cols)*tile_m
    (WS_4X8, Mapping(tile_m=16, tile_n=8, tile_k=32), (128, 32, 16)),
    (WS_4X8, Mapping(tile_m=8, tile_n=16, tile_k=32), (64, 64, 16)),
])
def test_tiles_that_fill_a_half_exactly_fit(params, mapping, rows):
    assert tile_rows(params, mapping) == rows
    check_mapping(params, BIG, mapping)


@pytest.mark.parametrize(("params", "mapping", "message"), [
    (OS_8X4, Mapping(tile_m=16, tile_n=8, tile_k=33),
     "mapping tile_m=16 tile_k=33 needs 1.03125 KiB of ifmap scratchpad (double-buffered), "
     "have 1"),
    (OS_8X4, Mapping(tile_m=8, tile_n=12, tile_k=64),
     "mapping tile_k=64 tile_n=12 needs 1.5 KiB of weight scratchpad (double-buffered), have 1"),
    (OS_8X4, Mapping(tile_m=24, tile_n=8, tile_k=8),
     "mapping tile_m=24 tile_n=8 needs 1.5 KiB of accumulator scratchpad (double-buffered), "
     "have 1"),
    (WS_4X8, Mapping(tile_m=17, tile_n=8, tile_k=32),
     "mapping tile_m=17 tile_k=32 needs 1.0625 KiB of ifmap scratchpad (double-buffered), "
     "have 1"),
    (WS_4X8, Mapping(tile_m=4, tile_n=8, tile_k=68),
     "mapping tile_k=68 tile_n=8 needs 1.0625 KiB of weight scratchpad (double-buffered), "
     "have 1"),
])
def test_one_step_past_a_half_is_refused(params, mapping, message):
    with pytest.raises(ParameterError) as err:
        check_mapping(params, BIG, mapping)
    assert str(err.value) == message


@pytest.mark.parametrize("field", ["m", "n", "k"])
def test_a_gemm_of_zero_is_refused(field):
    dims = {"m": 1, "n": 1, "k": 1, field: 0}
    with pytest.raises(ParameterError) as err:
        Gemm(**dims)
    assert str(err.value) == f"gemm {field} must be a positive integer, not 0"


def test_chooser_breaks_a_cycle_tie_by_fewer_memory_bytes():
    params = SystolicParams(rows=4, cols=2, dataflow="os", ifmap_kib=4, weight_kib=4,
                            acc_kib=4, bus_bytes=16, mem_latency=20)
    gemm = Gemm(m=10, n=8, k=32)
    chosen = default_mapping(params, gemm)
    assert chosen == Mapping(tile_m=4, tile_n=8, tile_k=32, order="mnk")
    tied = Mapping(tile_m=4, tile_n=4, tile_k=32, order="mnk")  # as fast, reads A twice
    best, other = model_gemm(params, gemm, chosen), model_gemm(params, gemm, tied)
    assert best.cycles == other.cycles == 423
    assert (best.actions["dram_read_bytes"], other.actions["dram_read_bytes"]) == (640, 1152)
