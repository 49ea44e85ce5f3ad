"""The clocked simulator main (sim/clocked_main.cpp) as a cocotb testbench sees it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwloop.sim.verilator import build_verilated, public_vlt, run_testbench
from hwloop.toolchain import VERILATOR_LINT_FLAGS

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
def test_clocked_main_drives_the_clock_cocotb_sees(tmp_path):
    build, _ = build_verilated(label="counter", top="counter_top",
                               sources={"counter.v": COUNTER_V, "public.vlt": PUBLIC},
                               flags=list(VERILATOR_LINT_FLAGS), extra={"what": "test-counter"},
                               clock="clk")
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
