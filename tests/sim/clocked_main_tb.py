"""cocotb side of tests/sim/test_verilator.py: what a testbench sees of the clocked main.

Records simulation times and counter values to the JSON file named by ``HWLOOP_TB_OUT``; the
pytest side checks them (this file imports only cocotb: it runs inside the simulator).
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import (
    FallingEdge,
    NextTimeStep,
    ReadOnly,
    ReadWrite,
    RisingEdge,
    Timer,
)
from cocotb.utils import get_sim_time


@cocotb.test()
async def observe(dut) -> None:
    seen: dict[str, object] = {}
    dut.enable.value = 1
    rises = []
    for _ in range(3):
        await RisingEdge(dut.clk)
        rises.append(get_sim_time("ns"))
    seen["rises"] = rises
    await FallingEdge(dut.clk)
    seen["fall"] = get_sim_time("ns")
    # a timer between edges: the design holds its value until the next rising edge
    before = int(dut.count.value)
    await Timer(3, "ns")
    seen["mid_cycle"] = [get_sim_time("ns"), before, int(dut.count.value)]
    # an edge of a design signal wakes the testbench up by itself
    await RisingEdge(dut.tick)
    seen["tick"] = [get_sim_time("ns"), int(dut.count.value)]
    # a write after an edge is seen by the next one
    await RisingEdge(dut.clk)
    dut.enable.value = 0
    held = int(dut.count.value)
    for _ in range(4):
        await RisingEdge(dut.clk)
    seen["held"] = [held, int(dut.count.value)]
    # the other regions of a time step: ReadOnly in this one, NextTimeStep the next one (the
    # falling edge, the only event), ReadWrite within it
    await RisingEdge(dut.clk)
    began = get_sim_time("ns")
    await ReadOnly()
    regions = [get_sim_time("ns") - began]
    await NextTimeStep()
    regions.append(get_sim_time("ns") - began)
    await ReadWrite()
    regions.append(get_sim_time("ns") - began)
    dut.enable.value = 1  # written in ReadWrite: seen by the next rising edge
    await RisingEdge(dut.clk)
    await ReadOnly()
    seen["regions"] = [*regions, get_sim_time("ns") - began, int(dut.count.value)]
    # timers over many quiet steps (the main keeps their deadline while Python sleeps), one
    # ending between edges and one on an edge; the design kept counting meanwhile
    began, count = get_sim_time("ns"), int(dut.count.value)
    await Timer(47, "ns")
    seen["long_timer"] = [get_sim_time("ns") - began, int(dut.count.value) - count]
    await Timer(53, "ns")
    seen["edge_timer"] = [get_sim_time("ns") - began, int(dut.count.value) - count]
    Path(os.environ["HWLOOP_TB_OUT"]).write_text(json.dumps(seen))
