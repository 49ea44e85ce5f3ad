"""The accelerator's Verilog generation (hdl/systolic/__init__.py)."""

from __future__ import annotations

from amaranth.back import rtlil, verilog

from hwloop.hdl.systolic import generate_verilog
from hwloop.hdl.systolic.accelerator import SystolicAccelerator
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.area import strip_memory_init


def test_zero_memory_contents_skipped_without_changing_the_verilog():
    """Skipping the all-zero memory contents in the RTLIL back end gives the same Verilog as
    Amaranth's full conversion with the initial blocks stripped (Yosys may order the always
    blocks differently), and Amaranth's back end is left as it was."""
    params = SystolicParams(rows=3, cols=2, dataflow="ws", in_bits=4, acc_bits=16, ifmap_kib=1,
                            weight_kib=1, acc_kib=1)
    emit_memory = rtlil.ModuleEmitter.emit_memory
    fast = generate_verilog(params)
    assert rtlil.ModuleEmitter.emit_memory is emit_memory
    full = verilog.convert(SystolicAccelerator(params=params), name=params.name, emit_src=False)
    assert "initial begin" in full and "initial begin" not in fast
    assert sorted(fast.splitlines()) == sorted(strip_memory_init(full).splitlines())
