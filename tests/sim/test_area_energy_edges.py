"""Area and energy proxies where the default tables or test designs hide a term: memories
inside repeated modules, an SRAM write factor other than 1, reference sizes of 0; and the
evaluation's totals on a non-square array."""

from __future__ import annotations

import pytest

from hwloop.errors import ConfigError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim import area as area_module
from hwloop.sim.area import AreaResult, synthesize
from hwloop.sim.energy import energy, load_energy_table
from hwloop.sim.evaluate import _external_rows_over, evaluate
from hwloop.sim.systolic.mapping import Gemm
from hwloop.sim.systolic.program import layout
from hwloop.workloads import Layer, Workload

# a 256 x 8-bit memory in a module instantiated three times
BANKS = r"""
module bank(input clk, input [7:0] d, input [7:0] addr, input we, output reg [7:0] q);
  reg [7:0] mem [0:255];
  always @(posedge clk) begin if (we) mem[addr] <= d; q <= mem[addr]; end
endmodule
module top(input clk, input [7:0] d, input [7:0] addr, input we,
           output [7:0] q0, output [7:0] q1, output [7:0] q2);
  bank b0(.clk(clk), .d(d), .addr(addr), .we(we), .q(q0));
  bank b1(.clk(clk), .d(q0), .addr(addr), .we(we), .q(q1));
  bank b2(.clk(clk), .d(q1), .addr(addr), .we(we), .q(q2));
endmodule
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_memory_bits_of_a_module_count_once_per_instance(cache):
    assert synthesize(BANKS, "bank").memory_bits == 256 * 8
    assert synthesize(BANKS, "top").memory_bits == 3 * 256 * 8


def _table(tmp_path, old: str, new: str):
    default = open(load_energy_table().source).read()
    assert old in default
    path = tmp_path / "energy.toml"
    path.write_text(default.replace(old, new, 1))
    return path


def test_sram_writes_cost_write_factor_times_a_read(tmp_path):
    table = load_energy_table(_table(tmp_path, "write_factor = 1.0", "write_factor = 2.5"))
    params = SystolicParams(ifmap_kib=8, weight_kib=32, acc_kib=8)
    prices = table.per_action(params)
    for name in ("ifmap", "weight", "acc"):
        component, read = prices[f"{name}_sram_read"]
        assert prices[f"{name}_sram_write"] == (component, pytest.approx(2.5 * read)), name
    total, parts = energy(params, {"ifmap_sram_write": 4, "ifmap_sram_read": 2}, table)
    assert parts["ifmap_sram"] == pytest.approx((4 * 2.5 + 2) * 1.25) == total


@pytest.mark.parametrize(("old", "new", "name"), [
    ("multiply_ref_bits = 8", "multiply_ref_bits = 0", "mac.multiply_ref_bits"),
    ("add_ref_bits = 32", "add_ref_bits = 0", "mac.add_ref_bits"),
    ("ref_bits = 64", "ref_bits = 0", "sram.ref_bits"),
    ("ref_kib = 8", "ref_kib = 0", "sram.ref_kib"),
])
def test_reference_sizes_of_zero_are_named(tmp_path, old, new, name):
    path = _table(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_energy_table(path)
    assert str(info.value) == f"{path}: {name} must be positive, not 0"


def test_external_rows_up_to_the_limit_fit():
    params = SystolicParams(rows=4, cols=2)
    gemm = Gemm(m=9, n=5, k=7)
    rows = layout(params, gemm)
    exact = {"a": rows.a_rows, "b": rows.b_rows, "c": rows.c_rows}
    assert _external_rows_over(params, gemm, exact) is None
    assert _external_rows_over(params, gemm, {**exact, "b": rows.b_rows - 1}) == \
        ("b", rows.b_rows, rows.b_rows - 1)


@pytest.fixture
def no_synthesis(monkeypatch):
    """The totals do not need Yosys: a fixed area."""
    fixed = AreaResult(area=123.0, area_cells=45, sram_bits=6789, cell_counts={"$_AND_": 45},
                       synth_s=0.0, cached=True)
    monkeypatch.setattr(area_module, "cached_area", lambda params, **_: fixed)


def test_utilization_counts_rows_times_cols_pes(no_synthesis):
    params = SystolicParams(rows=4, cols=2)
    workload = Workload("w", [Layer(name="a", m=8, n=6, k=5), Layer(name="b", m=3, n=2, k=9)])
    result = evaluate(params, workload, fidelity="model")
    assert result.macs == 8 * 6 * 5 + 3 * 2 * 9
    assert result.utilization == pytest.approx(result.macs / (4 * 2 * result.cycles))
    for layer in result.layers:
        assert layer.utilization == pytest.approx(layer.macs / (4 * 2 * layer.cycles))
    assert result.edp == pytest.approx(result.energy_pj * result.cycles)
