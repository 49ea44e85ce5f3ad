import importlib
import multiprocessing
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from hwloop.errors import ConfigError, ParameterError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.area import (
    AreaJob,
    area_from_synthesis,
    load_area_table,
    synthesize,
    synthesize_cached,
    systolic_area,
)
from hwloop.sim.energy import COMPONENTS, energy, load_energy_table

area_module = importlib.import_module("hwloop.sim.area")

# Two instances of one PE and a 1024 x 8-bit memory: the PE must be synthesized once and counted
# twice, the memory counted as bits, not flops.
VERILOG = r"""
module pe(input clk, input [7:0] a, input [7:0] b, output reg [31:0] acc);
  always @(posedge clk) acc <= acc + $signed(a) * $signed(b);
endmodule
module top(input clk, input [7:0] a, input [7:0] b, input [9:0] addr, input we,
           output [31:0] o0, output [31:0] o1, output reg [7:0] q);
  reg [7:0] mem [0:1023];
  initial begin
    mem[0] = 8'h00;
    mem[1] = 8'h00;
    \mem [2] = 8'h00;
  end
  always @(posedge clk) begin if (we) mem[addr] <= a; q <= mem[addr]; end
  pe p0(.clk(clk), .a(a), .b(b), .acc(o0));
  pe p1(.clk(clk), .a(q), .b(b), .acc(o1));
endmodule
"""

ONE_PE = """
module pe(input clk, input [7:0] a, input [7:0] b, output reg [31:0] acc);
  always @(posedge clk) acc <= acc + $signed(a) * $signed(b);
endmodule
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


#: Yosys itself, for the tests' own whole-design runs (``yosys_runs`` records synthesize's)
run_yosys = area_module._run_yosys


@pytest.fixture
def yosys_runs(monkeypatch):
    """The Yosys runs ``synthesize`` makes, as (top, black boxes), in the order they start."""
    runs = []

    def recorded(verilog, top, **kwargs):
        runs.append((top, kwargs.get("blackboxes", ())))
        return run_yosys(verilog, top, **kwargs)

    monkeypatch.setattr(area_module, "_run_yosys", recorded)
    return runs


def test_synthesis_keeps_hierarchy_and_counts_memory_as_bits(cache):
    both = synthesize(VERILOG, "top")
    pe = synthesize(ONE_PE, "pe")
    assert both.memory_bits == 1024 * 8
    assert pe.cell_counts["$_DFF_P_"] == 32  # the accumulator
    # every gate type of the PE appears exactly twice over in the top's totals
    for cell, count in pe.cell_counts.items():
        assert both.cell_counts[cell] >= 2 * count
    assert pe.memory_bits == 0
    assert not any(cell.startswith("$meminit") for cell in both.cell_counts)  # init dropped
    result = area_from_synthesis(both)
    table = load_area_table()
    assert result.sram_bits == 8192
    logic = sum(table.cell_area(t) * n for t, n in both.cell_counts.items())
    assert result.area == pytest.approx(logic + 8192 * table.sram_um2_per_bit)
    assert result.area_cells == sum(n for t, n in both.cell_counts.items()
                                    if not t.startswith("$mem"))


def test_leaf_modules_are_synthesized_alone_once_and_shared(cache, yosys_runs):
    """The PE (a leaf) is synthesized on its own, once for both designs that use it; the
    counts are those of one run over the whole design, the PE's taken twice."""
    assert list(area_module.leaf_modules(VERILOG, "top")) == ["pe"]
    first = synthesize(VERILOG, "top")
    smaller = VERILOG.replace("[0:1023]", "[0:511]").replace("[9:0] addr", "[8:0] addr")
    second = synthesize(smaller, "top")
    assert sorted(yosys_runs) == [("hwloop_leaf", ()), ("top", ("pe",)), ("top", ("pe",))]
    whole = run_yosys(area_module.strip_memory_init(VERILOG), "top")
    assert first.cell_counts == {t: n for t, n in whole.cell_counts.items() if t[0] == "$"}
    assert (first.memory_bits, second.memory_bits) == (1024 * 8, 512 * 8)


def test_leaves_that_differ_only_in_names_are_one_synthesis(cache, yosys_runs):
    """Two PE modules that differ in their names and in the numbers a tool gave their
    identifiers (as the PEs of an Amaranth mesh do) are synthesized once and counted twice; a
    PE that is different hardware is synthesized on its own."""
    pe = ONE_PE.strip().replace("module pe(", "module \\{name} (")
    numbered = "  wire \\$auto$x.cc:1$%d ;\n  assign \\$auto$x.cc:1$%d  = a[0];\nendmodule"
    pe_a = pe.format(name="m.pe_0").replace("endmodule", numbered % (3, 3))
    pe_b = pe.format(name="m.pe_1").replace("endmodule", numbered % (8, 8))
    pe_c = pe.format(name="m.pe_2").replace("acc + $signed(a)", "acc - $signed(a)")
    top = ("module top(input clk, input [7:0] a, input [7:0] b, output [31:0] o0,\n"
           "           output [31:0] o1, output [31:0] o2);\n"
           "  \\m.pe_0  p0 (.clk(clk), .a(a), .b(b), .acc(o0));\n"
           "  \\m.pe_1  p1 (.clk(clk), .a(b), .b(a), .acc(o1));\n"
           "  \\m.pe_2  p2 (.clk(clk), .a(a), .b(a), .acc(o2));\n"
           "endmodule\n")
    verilog = "\n".join([pe_a, pe_b, pe_c, top]) + "\n"
    assert sorted(area_module.leaf_modules(verilog, "top")) == ["m.pe_0", "m.pe_1", "m.pe_2"]
    both = synthesize(verilog, "top")
    assert sorted(top for top, _ in yosys_runs) == ["hwloop_leaf", "hwloop_leaf", "top"]
    one = run_yosys(ONE_PE, "pe").cell_counts
    minus = run_yosys(pe_c.replace("\\m.pe_2 ", "pe"), "pe").cell_counts
    assert both.cell_counts == {t: 2 * one.get(t, 0) + minus.get(t, 0)
                                for t in {*one, *minus}}


def test_a_module_above_the_leaves_is_synthesized_alone_and_shared(cache, yosys_runs):
    """A module that instantiates others (the accelerator's mesh) is a run of its own with
    them as black boxes, in parallel with the top's, and shared by designs that differ only
    around it, even where a tool numbered its identifiers differently; the counts are those of
    one run over the whole design."""
    mesh = ("module \\d.mesh (input clk, input [7:0] a, input [7:0] b, output [31:0] o0,\n"
            "                output [31:0] o1);\n"
            "  wire [7:0] \\$auto$x.cc:1$%d ;\n"
            "  assign \\$auto$x.cc:1$%d  = ~a;\n"
            "  pe p0(.clk(clk), .a(a), .b(b), .acc(o0));\n"
            "  pe p1(.clk(clk), .a(\\$auto$x.cc:1$%d ), .b(b), .acc(o1));\n"
            "endmodule\n")
    top = ("module top(input clk, input [7:0] a, input [7:0] b, output [31:0] o0,\n"
           "           output [31:0] o1, output reg [%d:0] q);\n"
           "  always @(posedge clk) q <= a * b;\n"
           "  \\d.mesh  m (.clk(clk), .a(a), .b(b), .o0(o0), .o1(o1));\n"
           "endmodule\n")
    first = ONE_PE + mesh % (5, 5, 5) + top % 15
    second = ONE_PE + mesh % (9, 9, 9) + top % 7  # another top; the mesh numbered anew
    one = synthesize(first, "top")
    two = synthesize(second, "top")
    assert sorted(yosys_runs) == [("d.mesh", ("pe",)), ("hwloop_leaf", ()), ("top", ("d.mesh",)),
                            ("top", ("d.mesh",))]
    for verilog, result in ((first, one), (second, two)):
        whole = run_yosys(verilog, "top")
        assert result.cell_counts == {t: n for t, n in whole.cell_counts.items() if t[0] == "$"}
    assert one.cell_counts != two.cell_counts


@pytest.fixture
def hanging_child(monkeypatch, tmp_path):
    """AreaJob's child replaced by one that never ends and starts a grandchild (as the child's
    Yosys) that never ends either; yields the file the grandchild's pid is written to."""
    pid_file = tmp_path / "grandchild.pid"
    code = ("import pathlib, subprocess, sys, time\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            f"pathlib.Path({str(pid_file)!r}).write_text(str(g.pid))\n"
            "time.sleep(600)")
    monkeypatch.setattr(area_module, "_area_command", lambda params: [sys.executable, "-c", code])
    monkeypatch.setattr(area_module, "_MEMO", {})  # no design counts as synthesized before
    return pid_file


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state  # killed, not yet reaped by its new parent


def _wait_for(path: Path) -> int:
    for _ in range(600):
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.1)
    raise AssertionError(f"{path} never written")


def test_area_job_cancel_kills_its_child_and_yosys(cache, hanging_child):
    job = AreaJob(SystolicParams(rows=2, cols=2))
    child = job._child
    assert child is not None  # not synthesized before: a child synthesizes it
    grandchild = _wait_for(hanging_child)
    job.cancel()
    assert child.poll() == -signal.SIGKILL
    for _ in range(100):
        if _gone(grandchild):
            break
        time.sleep(0.1)
    assert _gone(grandchild)


def _hold_area_job(pid_file: Path) -> None:
    """A sweep worker (or driver) that starts an AreaJob, records its child and waits."""
    job = AreaJob(SystolicParams(rows=2, cols=2))
    assert job._child is not None
    pid_file.write_text(str(job._child.pid))
    time.sleep(600)


def test_area_job_child_and_yosys_die_with_a_killed_parent(cache, monkeypatch, hanging_child):
    """A worker killed with its process group (a sweep timeout) or by kill -9 leaves no area
    child or Yosys running: the child watches its parent and kills its own session."""
    code = ("import pathlib, subprocess, sys, time\n"
            "from hwloop.sim.area import watch_parent\n"
            "watch_parent()\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            f"pathlib.Path({str(hanging_child)!r}).write_text(str(g.pid))\n"
            "time.sleep(600)")
    monkeypatch.setattr(area_module, "_area_command", lambda params: [sys.executable, "-c", code])
    child_file = hanging_child.with_name("child.pid")
    worker = multiprocessing.get_context("fork").Process(target=_hold_area_job,
                                                         args=(child_file,))
    worker.start()
    child = _wait_for(child_file)
    grandchild = _wait_for(hanging_child)
    assert not _gone(child) and not _gone(grandchild)
    os.kill(worker.pid, signal.SIGKILL)
    worker.join()
    for _ in range(50):
        if _gone(child) and _gone(grandchild):
            break
        time.sleep(0.1)
    assert _gone(child) and _gone(grandchild)


def test_area_child_runs_the_parent_watch():
    """The real child (python -m hwloop.sim.area) starts watch_parent before synthesizing."""
    assert area_module._area_command(SystolicParams(rows=2, cols=2))[1:3] == [
        "-m", "hwloop.sim.area"]
    main = Path(area_module.__file__).read_text().split('if __name__ == "__main__":')[1]
    assert main.splitlines()[1].strip() == "watch_parent()"


def test_area_job_result_is_the_synthesis(cache):
    params = SystolicParams(rows=2, cols=2, ifmap_kib=1, weight_kib=1, acc_kib=1)
    job = AreaJob(params)
    assert job._child is not None
    got = job.result()
    assert not got.cached and got.synth_s > 0  # the child's Yosys time counts as spent
    again = systolic_area(params)  # now cached, in this process too
    assert again.cached and (again.area, again.cell_counts) == (got.area, got.cell_counts)
    assert AreaJob(params)._child is None


def test_area_job_reports_no_yosys_time_for_a_verilog_cache_hit(cache):
    """A generator change that leaves the Verilog as it was keys the design afresh, but its
    child finds the synthesis under the Verilog text: no Yosys ran, none is reported."""
    params = SystolicParams(rows=2, cols=2, ifmap_kib=1, weight_kib=1, acc_kib=1)
    area_module._MEMO.clear()  # an earlier test's result, kept in memory under another cache
    made = AreaJob(params).result()
    assert not made.cached
    for path in (cache / "area").glob("p-*.json"):
        path.unlink()
    area_module._MEMO.clear()
    job = AreaJob(params)
    assert job._child is not None
    got = job.result()
    assert got.cached and got.synth_s == 0.0
    assert (got.area, got.cell_counts) == (made.area, made.cell_counts)


def test_evaluate_that_fails_kills_its_synthesis(cache, monkeypatch, hanging_child):
    """evaluate synthesizes the area proxy while it models or simulates; when it fails (here: a
    mapping that does not fit), it raises its own error and leaves no synthesis running."""
    from hwloop.sim import evaluate
    from hwloop.sim.systolic.mapping import Mapping
    from hwloop.workloads import Layer, Workload

    children = []
    evaluate_module = importlib.import_module("hwloop.sim.evaluate")

    class RecordedJob(AreaJob):
        def __init__(self, params):
            super().__init__(params)
            children.append(self._child)
            _wait_for(hanging_child)  # the stand-in Yosys is running when the failure comes

    monkeypatch.setattr(evaluate_module, "AreaJob", RecordedJob)
    params = SystolicParams(rows=2, cols=2, ifmap_kib=1, weight_kib=1, acc_kib=1)
    with pytest.raises(ParameterError, match="scratchpad"):
        evaluate(params, Workload("w", (Layer(name="x", m=64, n=64, k=64),)),
                 Mapping(tile_m=64, tile_n=64, tile_k=64), fidelity="model", reuse=False)
    assert len(children) == 1 and children[0].poll() == -signal.SIGKILL


def test_synthesis_cache_hit(cache):
    first, cached = synthesize_cached(ONE_PE, "pe")
    assert not cached
    second, cached = synthesize_cached(ONE_PE, "pe")
    assert cached and second.cell_counts == first.cell_counts
    assert list((cache / "area").glob("v-*.json"))


def test_area_table_patterns_first_match_wins():
    table = load_area_table()
    assert table.cell_area("$_NAND_") == pytest.approx(0.798)
    assert table.cell_area("$_DFF_P_") == pytest.approx(4.522)
    assert table.cell_area("$_DFF_PP0_") == pytest.approx(5.320)
    assert table.cell_area("$_DFFE_PP_") == pytest.approx(6.384)
    assert table.cell_area("$memrd_v2") == 0.0
    assert table.cell_area("$_WEIRD_") == pytest.approx(1.064)


def test_bad_area_table(tmp_path):
    path = tmp_path / "area.toml"
    path.write_text('[cells]\n"$_AND_" = -1\n[sram]\num2_per_bit = 0.5\n')
    with pytest.raises(ConfigError, match=r"area.toml: cells.\$_AND_ must be a non-negative "):
        load_area_table(path)


def test_energy_scales_with_width_and_sram_size():
    table = load_energy_table()
    p8 = SystolicParams(in_bits=8, acc_bits=32)
    p16 = SystolicParams(in_bits=16, acc_bits=32)
    # Horowitz 45 nm: 8-bit multiply 0.2 pJ + 32-bit add 0.1 pJ
    assert table.mac_pj(p8) == pytest.approx(0.3)
    assert table.mac_pj(p16) == pytest.approx(0.2 * 4 + 0.1)
    # 64-bit read from 8 KiB = 10 pJ; 32 KiB = 20 pJ
    assert table.sram_read_pj(word_bits=64, kib=8) == pytest.approx(10.0)
    assert table.sram_read_pj(word_bits=64, kib=32) == pytest.approx(20.0)
    assert table.sram_read_pj(word_bits=8, kib=8) == pytest.approx(1.25)


def test_energy_breakdown_sums_to_total_and_ignores_unknown_actions():
    params = SystolicParams(ifmap_kib=8, weight_kib=32)
    actions = {"mac": 1000, "ifmap_sram_read": 64, "weight_sram_write": 8,
               "acc_sram_read": 2, "dram_read_bytes": 10, "dram_write_bytes": 6,
               "pe_reg_write": 100, "something_new": 5}
    total, parts = energy(params, actions)
    assert set(parts) == set(COMPONENTS)
    assert total == pytest.approx(sum(parts.values()))
    assert parts["mac"] == pytest.approx(300.0)
    assert parts["ifmap_sram"] == pytest.approx(64 * 1.25)
    assert parts["weight_sram"] == pytest.approx(8 * 2.5)
    assert parts["acc_sram"] == pytest.approx(2 * 10.0 * 32 / 64 * (64 / 8) ** 0.5)
    assert parts["dram"] == pytest.approx(16 * 244.0)
    assert parts["pe_reg"] == pytest.approx(100 * 8 * 0.01)
    assert energy(params, {})[0] == 0.0


def test_bad_energy_table_names_file_and_line(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text("[mac]\nmultiply_pj = = 3\n")
    with pytest.raises(ConfigError, match=r"e.toml:2: "):
        load_energy_table(path)
    path.write_bytes(b"[mac]\n\n# \x80\n")
    with pytest.raises(ConfigError, match=r"e.toml:3: not UTF-8 text \(byte 0x80\)$"):
        load_energy_table(path)
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")  # a RecursionError traceback
    with pytest.raises(ConfigError, match=r"e.toml: arrays or inline tables nested too deeply$"):
        load_energy_table(path)
    path = tmp_path / "f.toml"
    default = open(load_energy_table().source).read()
    path.write_text(default.replace("pj_per_byte = 244.0", "pj_per_byte = -1"))
    with pytest.raises(ConfigError, match=r"f.toml: dram.pj_per_byte must be a non-negative "
                                          r"number, not -1$"):
        load_energy_table(path)


@pytest.mark.parametrize("edit", [("multiply_exponent = 2.0", "multiply_exponent = 1e308"),
                                  ("pj_per_byte = 244.0", "pj_per_byte = 1e308")])
def test_an_energy_table_too_large_to_compute_is_named(tmp_path, edit):
    """Values each finite but whose energies overflow: 2 ** 1e308 was an OverflowError
    traceback, a sum past 1.8e308 an infinite energy (``Infinity`` in ``--json``, not JSON)."""
    default = open(load_energy_table().source).read()
    path = tmp_path / "big.toml"
    path.write_text(default.replace(*edit, 1))
    table = load_energy_table(path)
    with pytest.raises(ConfigError, match=(
            rf"^{re.escape(str(path))}: the energy of systolic_8x8_os_i16a32 on these actions "
            r"is too large to compute: check the table's values$")):
        energy(SystolicParams(in_bits=16), {"mac": 10, "dram_read_bytes": 10}, table)


def test_bad_area_table_values_are_finite(tmp_path):
    path = tmp_path / "area.toml"
    path.write_text('[cells]\n"$_AND_" = nan\n[sram]\num2_per_bit = 0.5\n')
    with pytest.raises(ConfigError, match=r"area.toml: cells.\$_AND_ must be a non-negative "
                                          r"number, not nan$"):
        load_area_table(path)
    path.write_text('[cells]\n"$_AND_" = 1\n[sram]\num2_per_bit = inf\n')
    with pytest.raises(ConfigError, match=r"area.toml: sram.um2_per_bit must be a non-negative "
                                          r"number, not inf$"):
        load_area_table(path)


@pytest.mark.parametrize("edit, message", [
    (("add_pj = 0.1", ""), "mac.add_pj is missing"),
    (("[mac]\n", "[mac]\nfoo = 1\n"),
     "[mac] unknown key 'foo' (known: multiply_pj, multiply_ref_bits, multiply_exponent, add_pj, "
     "add_ref_bits, add_exponent)"),
    (("[dram]\n", "[dram]\n[wires]\n"),
     "unknown table [wires] (known: mac, sram, dram, register)"),
])
def test_energy_table_missing_and_unknown_keys_are_named(tmp_path, edit, message):
    default = open(load_energy_table().source).read()
    assert edit[0] in default
    path = tmp_path / "en2.toml"
    path.write_text(default.replace(*edit, 1))
    with pytest.raises(ConfigError) as info:
        load_energy_table(path)
    assert str(info.value) == f"{path}: {message}"
