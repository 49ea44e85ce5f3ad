"""Per-resource lower bounds on a layer's cycles (hwloop.sim.systolic.bounds)."""

from __future__ import annotations

import numpy as np
import pytest

from hwloop.errors import ParameterError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.evaluate import evaluate
from hwloop.sim.systolic.bounds import RESOURCES, cycle_bounds, limiting
from hwloop.sim.systolic.mapping import Gemm, default_mapping
from hwloop.sim.systolic.model import model_gemm
from hwloop.workloads import Layer, Workload
from tests.sim.random_layers import random_mapping


def _actions(**counts: int) -> dict[str, int]:
    base = dict.fromkeys(("mac", "ifmap_sram_write", "weight_sram_write", "dram_write_bytes"), 0)
    return {**base, **counts}


def test_compute_is_the_feeds_of_the_padded_gemm():
    params = SystolicParams(rows=8, cols=4)
    run = model_gemm(params, Gemm(m=9, n=5, k=7), default_mapping(params, Gemm(m=9, n=5, k=7)))
    # os: 2 x 2 array tiles of the padded 16 x 8 output, each streaming k = 7
    assert cycle_bounds(params, run.actions)["compute"] == 2 * 2 * 7


def test_read_counts_whole_rows_per_beat_and_wide_rows_over_several_cycles():
    # A rows of 6 x 2 bytes: one per 16-byte beat (not 16/12 of one); B rows of 16 x 2 bytes:
    # a beat of two cycles each
    params = SystolicParams(rows=6, cols=16, in_bits=16, bus_bytes=16)
    bounds = cycle_bounds(params, _actions(ifmap_sram_write=10 * 6, weight_sram_write=3 * 16))
    assert bounds["read"] == 10 * 1 + 3 * 2
    # 4-byte rows, four to a beat: 10 rows need 3 beats
    params = SystolicParams(rows=4, cols=4, bus_bytes=16)
    assert cycle_bounds(params, _actions(ifmap_sram_write=10 * 4))["read"] == 3


@pytest.mark.parametrize("out_bits, row_cycles", [(None, 2), (8, 1)])
def test_write_is_stored_rows_times_their_beat(out_bits, row_cycles):
    # 8 sums of 4 bytes on a 16-byte write path: 2 cycles a row; requantized to int8: 1
    params = SystolicParams(rows=8, cols=8, bus_bytes=16, out_bits=out_bits)
    row_bytes = 8 * (4 if out_bits is None else 1)
    bounds = cycle_bounds(params, _actions(dram_write_bytes=24 * row_bytes))
    assert bounds["write"] == 24 * row_cycles


def test_limiting_is_the_largest_bound_and_compute_on_a_tie():
    assert limiting({"compute": 5, "read": 9, "write": 9}) == "read"
    assert limiting({"compute": 9, "read": 9, "write": 1}) == "compute"
    assert limiting({"compute": 1, "read": 2, "write": 3}) == "write"


@pytest.mark.parametrize("seed", range(3))
def test_no_run_beats_any_of_its_bounds(seed):
    """The model equals the RTL cycle for cycle, so a bound above its cycles is a wrong
    bound (or a model that runs a resource faster than the hardware can)."""
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    runs = 0
    limits = set()
    while runs < 200:
        in_bits = int(rng.choice([4, 8, 16]))
        try:
            params = SystolicParams(
                rows=int(rng.choice([1, 2, 3, 4, 8, 16])),
                cols=int(rng.choice([1, 2, 3, 4, 8, 16])),
                dataflow=str(rng.choice(["os", "ws"])), in_bits=in_bits,
                acc_bits=int(rng.choice([2 * in_bits, 32, 48])),
                bus_bytes=int(rng.choice([4, 8, 16, 32, 64])),
                mem_latency=int(rng.integers(1, 30)),
                out_bits=None if rng.random() < 0.6 else 8,
                read_ahead=bool(rng.random() < 0.5))
        except ParameterError:
            continue
        # log-uniform: short k (write-bound) and batch-1 m (read-bound) as often as large
        m, n, k = (int(2 ** rng.uniform(0, 7.7)) for _ in range(3))
        gemm = Gemm(m=m, n=n, k=k)
        # random mappings: the chooser's search would take most of the time
        mappings = [random_mapping(rng, params, gemm, free=48) for _ in range(3)]
        for mapping in filter(None, mappings):
            run = model_gemm(params, gemm, mapping)
            bounds = cycle_bounds(params, run.actions)
            assert set(bounds) == set(RESOURCES)
            assert max(bounds.values()) <= run.cycles, (params, gemm, mapping, bounds)
            limits.add(limiting(bounds))
            runs += 1
    assert limits == set(RESOURCES)  # the draws reach every kind of limit


def test_evaluation_layers_carry_their_bounds(monkeypatch):
    from hwloop.sim import area

    # bounds come from the run's actions: no synthesis needed
    monkeypatch.setattr(area, "cached_area", lambda params, **_: area.AreaResult(
        area=1.0, area_cells=1, sram_bits=1, cell_counts={}, synth_s=0.0, cached=True))
    params = SystolicParams(rows=4, cols=4, dataflow="ws", bus_bytes=4)
    workload = Workload(name="w", layers=[Layer(name="tall", m=64, n=4, k=8),
                                          Layer(name="fc", m=1, n=100, k=128)])
    evaluation = evaluate(params, workload, fidelity="model")
    tall, fc = evaluation.layers
    # 64 rows of 4 32-bit sums on a 4-byte write path: 4 cycles a row; the array feeds each
    # row once per k block (2)
    assert tall.bounds["write"] == 64 * 4 and tall.bounds["compute"] == 64 * 2
    assert limiting(tall.bounds) == "write"
    # batch 1 on ws: the 128 x 100 bytes of weights dominate
    assert fc.bounds["read"] >= 128 * 100 // 4 and limiting(fc.bounds) == "read"
    for layer in evaluation.layers:
        assert max(layer.bounds.values()) <= layer.cycles
