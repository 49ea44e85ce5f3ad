"""The clocked simulator main (sim/clocked_main.cpp) as a cocotb testbench sees it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hwloop.sim.verilator import LZ4_HEADER, build_verilated, public_vlt, run_testbench
from hwloop.toolchain import VERILATOR_LINT_FLAGS, verilator_root

COUNTER_V = """`timescale 1ns/1ps
module counter_top (
  input wire clk,
  input wire enable,
  output reg [7:0] count = 8'd0,
  output wire tick
);
  always @(posedge clk) if (enable) count <= count + 8'd1;
  assign tick = count[3];
endmodule
"""
PUBLIC = public_vlt("counter_top", ("clk", "enable", "count", "tick"))


@pytest.mark.rtl
@pytest.mark.parametrize("split", [False, True], ids=["one-file", "split-fast-extends"])
def test_clocked_main_drives_the_clock_cocotb_sees(tmp_path, split):
    # split: the systolic builds' options on a model that Verilator writes as several files,
    # compiled with a precompiled header (as it does for 16x16 arrays and larger)
    flags = [*VERILATOR_LINT_FLAGS, *(["--output-split", "1"] if split else [])]
    build, _ = build_verilated(label="counter", top="counter_top",
                               sources={"counter.v": COUNTER_V, "public.vlt": PUBLIC},
                               flags=flags, extra={"what": "test-counter"}, clock="clk",
                               fast_extends=split)
    if split:
        assert (build / "obj" / "Vtop__pch.h.fast.gch").exists()
    out = tmp_path / "seen.json"
    run_testbench(build, top="counter_top", module="clocked_main_tb", work=tmp_path,
                  testbench=Path(__file__).with_name("clocked_main_tb.py"),
                  env={"HWLOOP_TB_OUT": str(out)}, log=tmp_path / "sim.log")
    assert out.exists(), (tmp_path / "sim.log").read_text()[-2000:]
    seen = json.loads(out.read_text())
    # 10 ns cycles, low at time 0: rising edges at 5, 15, 25 ns, falling in between
    assert seen["rises"] == [5, 15, 25]
    assert seen["fall"] == 30
    assert seen["mid_cycle"] == [33, 3, 3]
    # count[3] rises with the 8th rising edge (75 ns), when count becomes 8
    assert seen["tick"] == [75, 8]
    # enable, cleared right after the edge at 85 ns (count 9), holds the count from the
    # edge at 95 ns on
    assert seen["held"] == [9, 9]
    # ReadOnly at the rising edge's time, NextTimeStep and ReadWrite at the falling edge 5 ns
    # later; enable set there counts again from the next rising edge, 10 ns after the first
    assert seen["regions"] == [0, 5, 5, 10, 10]
    # from that rising edge: a 47 ns timer sees the 4 edges up to 40 ns; one ending on the
    # edge at 100 ns fires before that edge (timed callbacks come first in a time step)
    assert seen["long_timer"] == [47, 4]
    assert seen["edge_timer"] == [100, 9]


@pytest.mark.rtl
def test_waves_record_the_steps_python_sleeps_through(tmp_path):
    """The quiet time steps (cocotb asleep, the main evaluating the model directly) are in the
    waves too: every rising edge that counts is a time step of the trace (a waves run once
    recorded only the steps where Python ran)."""
    build, _ = build_verilated(label="counter", top="counter_top",
                               sources={"counter.v": COUNTER_V, "public.vlt": PUBLIC},
                               flags=list(VERILATOR_LINT_FLAGS),
                               extra={"what": "test-counter-waves"}, clock="clk", waves=True)
    out = tmp_path / "seen.json"
    run_testbench(build, top="counter_top", module="clocked_main_tb", work=tmp_path,
                  testbench=Path(__file__).with_name("clocked_main_tb.py"), waves=True,
                  env={"HWLOOP_TB_OUT": str(out)}, log=tmp_path / "sim.log")
    assert out.exists(), (tmp_path / "sim.log").read_text()[-2000:]
    vcd = next(tmp_path.rglob("*.vcd"))
    steps = {int(line[1:]) for line in vcd.read_text().splitlines() if line.startswith("#")}
    # the 47 ns timer sleeps through the rising edges at 55..95 ns, where the count changes
    rises = {t * 1000 for t in range(55, 100, 10)}
    assert rises <= steps, sorted(rises - steps)


EXTENDS_CHECK_CPP = r"""
#include "verilated_extends.h"
#include <cstdio>
#include <random>
// Verilator's originals, by name in parentheses (no function-like macro expansion)
int main() {
    std::mt19937_64 rng(7);
    long checked = 0;
    for (int lbits = 1; lbits <= 64; ++lbits) {
        const QData mask = lbits == 64 ? ~0ULL : (1ULL << lbits) - 1;
        for (int i = 0; i < 20000; ++i) {
            QData x = rng();
            if (i < 4) x = QData{i == 0 ? 0 : i == 1 ? ~0ULL : i == 2 ? 1ULL << (lbits - 1)
                                                                  : (1ULL << (lbits - 1)) - 1};
            x &= mask;  // clean: no bits above lbits, as Verilator passes them
            const QData z = rng() & mask;
            if ((VL_EXTENDS_QQ)(64, lbits, x) != hwloop_extends_qq(lbits, x)
                || (VL_MULS_QQQ)(lbits, x, z) != hwloop_muls_qqq(lbits, x, z)) {
                std::printf("QQ lbits=%d x=%llx\n", lbits, (unsigned long long)x);
                return 1;
            }
            if (lbits <= 32) {
                const IData y = static_cast<IData>(x);
                const IData w = static_cast<IData>(z);
                if ((VL_EXTENDS_II)(32, lbits, y) != hwloop_extends_ii(lbits, y)
                    || (VL_EXTENDS_QI)(64, lbits, y) != VL_EXTENDS_QI(64, lbits, y)
                    || (VL_MULS_III)(lbits, y, w) != hwloop_muls_iii(lbits, y, w)) {
                    std::printf("II/QI lbits=%d x=%x\n", lbits, y);
                    return 1;
                }
            }
            ++checked;
        }
    }
    std::printf("ok %ld\n", checked);
    return 0;
}
"""


def test_fast_sign_extension_equals_verilators(tmp_path):
    """sim/verilated_extends.h: the shift-pair sign extension (and the signed products built on
    it) that the systolic builds compile with give Verilator's result on every clean operand
    (edge values and random ones, every width up to 64 bits)."""
    import shutil
    import subprocess

    from hwloop.sim.verilator import FAST_EXTENDS
    from hwloop.toolchain import verilator_root

    include = verilator_root() / "include"
    (tmp_path / "check.cpp").write_text(EXTENDS_CHECK_CPP)
    compiler = shutil.which("g++") or shutil.which("c++")
    assert compiler is not None
    subprocess.run([compiler, "-O2", "-std=c++17", f"-I{include}", f"-I{include / 'vltstd'}",
                    f"-I{FAST_EXTENDS.parent}", "check.cpp", "-o", "check"],
                   cwd=tmp_path, check=True, capture_output=True)
    result = subprocess.run([str(tmp_path / "check")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("ok 1280000")


def test_the_lz4_header_declares_every_lz4_function_the_fst_writer_calls():
    """Wave builds on a system without lz4's headers compile the FST writer against hwloop's
    own declarations: a Verilator release that calls another lz4 function must fail here,
    not in a user's build."""
    writer = verilator_root() / "include" / "fstcpp" / "fstcpp_writer.cpp"
    called = set(re.findall(r"\b(LZ4_\w+)\s*\(", writer.read_text()))
    declared = set(re.findall(r"\b(LZ4_\w+)\s*\(", LZ4_HEADER))
    assert called and called <= declared, called - declared


def test_the_build_key_holds_the_top_module_and_waves(monkeypatch):
    """Two builds of the same sources that differ only in their top-level module, or in whether
    they write waves, are different models: each has its own key (one design's model was
    returned for the other's top, a build without waves for a waves run)."""
    from hwloop.sim import verilator

    keys = []

    class Recorder:
        def get_or_build(self, key, build):
            keys.append(key)
            return Path("/nowhere"), False

    monkeypatch.setattr(verilator, "BuildCache", Recorder)
    # a system with lz4's headers: waves add no flags of hwloop's own
    monkeypatch.setattr(verilator, "lz4_header", lambda: "/usr/include/lz4.h")
    two = COUNTER_V + COUNTER_V.replace("counter_top", "other_top")
    for top, waves in (("counter_top", False), ("other_top", False), ("counter_top", True)):
        build_verilated(label="counter", top=top, sources={"counter.v": two},
                        flags=list(VERILATOR_LINT_FLAGS), extra={"what": "test-key"},
                        waves=waves)
    assert len(set(keys)) == 3


def test_a_damaged_build_is_one_line_naming_it(tmp_path):
    """A cached simulator that cannot be executed (a file emptied by a full disk or a crash)
    was an OSError traceback from subprocess; it names the build to remove."""
    from hwloop.errors import SimulationError

    build = tmp_path / "builds" / "0123abcd"
    (build / "obj").mkdir(parents=True)
    binary = build / "obj" / "counter_top"
    binary.write_bytes(b"")
    binary.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    testbench = tmp_path / "tb.py"
    testbench.write_text("import cocotb\n")
    with pytest.raises(SimulationError) as info:
        run_testbench(build, top="counter_top", testbench=testbench, module="tb_mod",
                      work=work, env={}, log=work / "sim.log")
    assert str(info.value) == (f"cannot run the simulator {binary}: Exec format error; its "
                               f"build may be damaged: remove {build} (a cached build) and run "
                               "again")
