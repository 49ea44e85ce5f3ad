import importlib
import os
import re

import numpy as np
import pytest

from hwloop.errors import ConfigError, ParameterError, SimulationError
from hwloop.evaluation import METRICS
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim import check_design, evaluate
from hwloop.sim.energy import energy
from hwloop.sim.systolic.bounds import cycle_bounds
from hwloop.sim.systolic.mapping import Gemm, Mapping
from hwloop.sim.systolic.model import model_gemm
from hwloop.workloads import Layer, Workload

evaluate_module = importlib.import_module("hwloop.sim.evaluate")
area_module = importlib.import_module("hwloop.sim.area")

SMALL = SystolicParams(rows=4, cols=4, ifmap_kib=4, weight_kib=4, acc_kib=4)
SEED = int(os.environ.get("HWLOOP_SEED", "1234"))


def tiny_workload() -> Workload:
    return Workload("t", (
        Layer(name="a", m=12, n=10, k=9),
        Layer(name="b", m=7, n=5, k=13),
        Layer(name="c", m=12, n=10, k=9),  # same shape as a: evaluated once
        Layer(name="d", m=6, n=6, k=6, repeat=3),
    ))


@pytest.fixture
def no_synthesis(monkeypatch):
    """Model-path tests about bookkeeping do not need Yosys: a fixed area."""
    from hwloop.sim.area import AreaResult

    fixed = AreaResult(area=123.0, area_cells=45, sram_bits=6789, cell_counts={"$_AND_": 45},
                       synth_s=0.0, cached=True)
    monkeypatch.setattr(area_module, "cached_area", lambda params, **_: fixed)
    return fixed


def test_model_evaluation_sums_distinct_shapes_times_repeat(no_synthesis):
    result = evaluate(SMALL, tiny_workload(), fidelity="model")
    assert [(x.name, x.repeat) for x in result.layers] == [("a", 2), ("b", 1), ("d", 3)]
    for layer in result.layers:
        gemm = Gemm(m=layer.m, n=layer.n, k=layer.k)
        run = model_gemm(SMALL, gemm, Mapping.from_dict(layer.mapping))
        assert layer.cycles == run.cycles
        assert layer.macs == layer.m * layer.n * layer.k
        assert layer.utilization == pytest.approx(layer.macs / (16 * layer.cycles))
        assert layer.energy_pj == pytest.approx(energy(SMALL, run.actions)[0])
        assert layer.energy_breakdown == energy(SMALL, run.actions)[1]
        assert layer.bounds == cycle_bounds(SMALL, run.actions)
        assert layer.bit_exact is None
    assert result.cycles == sum(x.cycles * x.repeat for x in result.layers)
    assert result.macs == 2 * 12 * 10 * 9 + 7 * 5 * 13 + 3 * 6 ** 3
    assert result.utilization == pytest.approx(result.macs / (16 * result.cycles))
    assert result.energy_pj == pytest.approx(sum(x.energy_pj * x.repeat for x in result.layers))
    assert result.energy_pj == pytest.approx(sum(result.energy_breakdown.values()))
    for part, total in result.energy_breakdown.items():
        assert total == pytest.approx(sum(x.energy_breakdown[part] * x.repeat
                                          for x in result.layers))
    assert result.edp == pytest.approx(result.energy_pj * result.cycles)
    assert (result.area, result.area_cells, result.sram_bits) == (123.0, 45, 6789)
    assert result.bit_exact is None and result.fidelity == "model"
    assert set(METRICS) <= set(result.metrics())
    assert {"build_s", "simulate_s", "synthesize_s", "total_s"} <= set(result.wall)
    assert "verilator" in result.tool_versions


def test_layers_and_first_select(no_synthesis):
    result = evaluate(SMALL, tiny_workload(), fidelity="model", layers=["b", "d"])
    assert [x.name for x in result.layers] == ["b", "d"]
    result = evaluate(SMALL, "tiny", fidelity="model", first=1)
    assert [x.name for x in result.layers] == ["g1"]


def test_mapping_forms(no_synthesis):
    fixed = Mapping(tile_m=8, tile_n=8, tile_k=8, order="nmk")
    result = evaluate(SMALL, tiny_workload(), fixed, fidelity="model")
    for layer in result.layers:
        expected = fixed.fit_to(SMALL, Gemm(m=layer.m, n=layer.n, k=layer.k))
        assert layer.mapping == expected.to_dict()
    as_dict = evaluate(SMALL, tiny_workload(), fixed.to_dict(), fidelity="model")
    assert as_dict.cycles == result.cycles
    seen = []

    def rule(params, gemm):
        seen.append(gemm)
        return Mapping(tile_m=4, tile_n=4, tile_k=4).fit_to(params, gemm)

    by_rule = evaluate(SMALL, tiny_workload(), rule, fidelity="model")
    assert len(seen) == 3 and all(x.mapping["tile_k"] == 4 for x in by_rule.layers)


def test_static_infeasibility_is_a_parameter_error_before_simulation(monkeypatch):
    def no_simulation(*args, **kwargs):
        raise AssertionError("simulated an infeasible design")

    monkeypatch.setattr(evaluate_module, "_run_rtl", no_simulation)
    cramped = SystolicParams(rows=64, cols=64, ifmap_kib=1, weight_kib=1, acc_kib=1)
    with pytest.raises(ParameterError, match=r"^layer 'fc1' \(64x256x784\): "):
        check_design(cramped, "mlp")
    with pytest.raises(ParameterError):
        evaluate(cramped, "mlp", fidelity="rtl")
    too_big = Mapping(tile_m=64, tile_n=64, tile_k=4096)
    with pytest.raises(ParameterError, match=r"needs .* KiB of .* scratchpad"):
        check_design(SystolicParams(ifmap_kib=8), Workload("w", (Layer(name="x", m=64, n=64,
                                                                         k=4096),)), too_big)


def test_a_layer_past_the_accelerators_addresses_is_refused(monkeypatch, no_synthesis):
    """The accelerator's instructions address external memory in 32-bit fields: a layer that
    needs 2**32 rows or more cannot be programmed; the model walked its tiles instead (a CSV
    layer of 10**20 rows never finished)."""
    def no_model(*args, **kwargs):
        raise AssertionError("modelled a layer the accelerator cannot address")

    monkeypatch.setattr(evaluate_module, "_run_model", no_model)
    huge = Workload("w", (Layer(name="ok", m=8, n=8, k=8), Layer(name="big", m=10**20, n=4,
                                                                   k=4)))
    message = (r"^layer 'big' \(100000000000000000000x4x4\): needs 100000000000000000000 rows "
               r"of external A memory, the accelerator addresses 4294967296$")
    with pytest.raises(ParameterError, match=message):
        check_design(SMALL, huge)
    with pytest.raises(ParameterError, match=message):
        evaluate(SMALL, huge, fidelity="model")
    check_design(SMALL, huge.select(first=1))


def test_bad_fidelity_and_params():
    with pytest.raises(ParameterError, match=r"^fidelity must be one of rtl, model, not 'fast'$"):
        evaluate(SMALL, "tiny", fidelity="fast")
    with pytest.raises(ParameterError, match=r"^rows must be an integer in 1..64, not 0$"):
        evaluate({"rows": 0}, "tiny", fidelity="model")
    with pytest.raises(ParameterError, match=r"^seed must be a non-negative integer, not -2$"):
        evaluate(SMALL, "tiny", seed=-2)


def _model_simulator(*, corrupt=None, calls: list | None = None):
    """A stand-in for ``RtlSimulator``: the model's cycles and actions, the golden C (which
    ``corrupt(gemm, c)`` may return changed); ``calls`` gets the job count of every run."""
    from hwloop.sim.systolic.golden import gemm_golden

    class ModelSimulator:
        def __init__(self, params, *, waves=False, workdir=None):
            self.params = params

        def build(self):
            return 0.0

        def run(self, jobs, out_shifts=None):
            if calls is not None:
                calls.append(len(jobs))
            runs = []
            for gemm, mapping, a, b in jobs:
                run = model_gemm(self.params, gemm, mapping)
                run.c = gemm_golden(a, b, acc_bits=self.params.acc_bits)
                if corrupt is not None:
                    run.c = corrupt(gemm, run.c)
                runs.append(run)
            return runs

    return ModelSimulator


def test_wrong_rtl_result_is_loud(monkeypatch, no_synthesis):
    """A simulator that returns a wrong result must make evaluate() raise, naming the layer."""
    rtl = importlib.import_module("hwloop.sim.systolic.rtl")

    def corrupt(gemm, c):
        if gemm.m == 7:
            c = c.copy()
            c[3, 2] += 1
        return c

    monkeypatch.setattr(rtl, "RtlSimulator", _model_simulator(corrupt=corrupt))
    with pytest.raises(SimulationError) as info:
        evaluate(SMALL, tiny_workload(), fidelity="rtl", seed=5, reuse=False)
    message = str(info.value)
    assert "seed 5" in message and "layer 'b' (7x5x13): 1 of 35 elements differ" in message
    assert "C[3,2]" in message


def test_a_layer_too_large_for_the_harness_is_refused_before_operands(monkeypatch,
                                                                     no_synthesis):
    """The co-simulation harness has external memories of at most MAX_DEPTH rows: a layer that
    needs more was found only after its random operands were drawn (numpy's MemoryError, a
    traceback, for a big one), now it is a ParameterError naming the layer first."""
    rtl = importlib.import_module("hwloop.sim.systolic.rtl")
    golden = importlib.import_module("hwloop.sim.systolic.golden")

    def never(*args, **kwargs):
        raise AssertionError("drew operands or built for a layer the harness cannot hold")

    monkeypatch.setattr(rtl, "RtlSimulator", never)
    monkeypatch.setattr(golden, "random_operands", never)
    huge = Workload("w", (Layer(name="ok", m=8, n=8, k=8),
                          Layer(name="big", m=1_000_000, n=4, k=100)))
    with pytest.raises(ParameterError, match=(
            r"^layer 'big' \(1000000x4x100\): needs 25000000 rows of external A memory, the "
            r"co-simulation harness of systolic_4x4_os_i8a32\w* has 4194304 \(--fidelity model "
            r"has no such limit\)$")):
        evaluate(SMALL, huge, fidelity="rtl", reuse=False)


def test_an_edp_too_large_to_compute_names_the_energy_table(tmp_path, no_synthesis):
    """Each layer's energy finite, but energy x cycles past 1.8e308: the EDP was inf, written
    as ``Infinity`` by ``--json`` (not JSON) and compared as inf by searches."""
    from hwloop.sim.energy import load_energy_table

    default = open(load_energy_table().source).read()
    path = tmp_path / "big.toml"
    path.write_text(default.replace("pj_per_byte = 244.0", "pj_per_byte = 1e304", 1))
    with pytest.raises(ConfigError, match=(
            rf"^{re.escape(str(path))}: the energy of systolic_4x4_os_i8a32_s4_4_4 on 't' is too "
            r"large to compute \(energy x cycles\): check the table's values$")):
        evaluate(SMALL, tiny_workload(), fidelity="model", energy_table=path)


def test_finished_evaluations_are_reused_only_when_nothing_changed(monkeypatch, tmp_path,
                                                                    no_synthesis):
    monkeypatch.setenv("HWLOOP_CACHE", str(tmp_path))
    rtl = importlib.import_module("hwloop.sim.systolic.rtl")
    calls: list[int] = []
    monkeypatch.setattr(rtl, "RtlSimulator", _model_simulator(calls=calls))
    first = evaluate(SMALL, tiny_workload(), fidelity="rtl", seed=1)
    again = evaluate(SMALL, tiny_workload(), fidelity="rtl", seed=1)
    assert calls == [3] and "reused" in again.artifacts and "reused" not in first.artifacts
    assert again.to_dict()["layers"] == first.to_dict()["layers"]
    assert again.cycles == first.cycles and again.bit_exact is True
    evaluate(SMALL, tiny_workload(), fidelity="rtl", seed=2)  # another seed: simulated
    evaluate(SMALL, tiny_workload(), fidelity="rtl", seed=1, reuse=False)
    evaluate(SMALL, tiny_workload(), Mapping(tile_m=4, tile_n=4, tile_k=4), fidelity="rtl",
             seed=1)  # another mapping
    assert calls == [3, 3, 3, 3]
    model = evaluate(SMALL, tiny_workload(), fidelity="model")
    assert "reused" not in model.artifacts and model.bit_exact is None


@pytest.mark.rtl
@pytest.mark.xdist_group("systolic_4x4_os")
def test_rtl_evaluation_is_bit_exact_and_close_to_the_model():
    print(f"seed {SEED}")
    result = evaluate(SMALL, tiny_workload(), fidelity="rtl", seed=SEED, reuse=False)
    model = evaluate(SMALL, tiny_workload(), fidelity="model", reuse=False)
    assert "reused" not in result.artifacts
    assert result.bit_exact is True
    assert all(x.bit_exact is True for x in result.layers)
    assert result.area > 0 and result.area_cells > 0
    assert result.sram_bits >= 3 * 4 * 1024 * 8  # the three scratchpads at least
    assert result.macs == model.macs
    for rtl_layer, model_layer in zip(result.layers, model.layers, strict=True):
        assert rtl_layer.actions["mac"] >= rtl_layer.macs  # padding may add MACs
        assert abs(rtl_layer.cycles - model_layer.cycles) <= max(2, 0.05 * model_layer.cycles)
        # the bounds come from the RTL's own counters, and the hardware respects them
        assert rtl_layer.bounds == cycle_bounds(SMALL, rtl_layer.actions)
        assert max(rtl_layer.bounds.values()) <= rtl_layer.cycles
    assert np.isfinite(result.edp) and result.edp > 0
