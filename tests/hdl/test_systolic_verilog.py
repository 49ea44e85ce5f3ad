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


def test_ws_partial_sums_hold_every_sum_of_their_rows():
    """PE row r's partial sum is the sum of r + 1 products of signed in_bits numbers: its width
    holds the largest and the smallest such sum, and never exceeds acc_bits."""
    from hwloop.hdl.systolic.mesh import psum_bits

    for w in (2, 3, 8, 16):
        for acc in (2 * w, 2 * w + 3, 64):
            p = SystolicParams(rows=64, cols=2, dataflow="ws", in_bits=w, acc_bits=acc)
            for r in range(64):
                bits = psum_bits(p, r)
                assert bits <= acc
                if bits < acc:  # no wrap: every sum fits
                    most = (r + 1) * 4 ** (w - 1)  # (-2^(w-1))^2 each
                    least = -(r + 1) * 2 ** (w - 1) * (2 ** (w - 1) - 1)
                    assert least >= -(2 ** (bits - 1)) and most <= 2 ** (bits - 1) - 1


def test_mesh_pes_are_modules_of_a_few_kinds():
    """Every PE is a module; apart from their names and tool-numbered identifiers they come in
    a few kinds (the area proxy synthesizes each kind once): os, as many on 10x10 as on 6x6
    (inner PEs, and edge PEs with fewer ports); ws, a few per PE row (its partial sums' width)."""
    from hwloop.sim.area import anonymous, leaf_modules

    def kinds(rows: int, cols: int, dataflow: str) -> int:
        p = SystolicParams(rows=rows, cols=cols, dataflow=dataflow, ifmap_kib=4, weight_kib=4,
                           acc_kib=4)
        leaves = leaf_modules(strip_memory_init(generate_verilog(p)), p.name)
        assert sorted(leaves) == sorted(f"{p.name}.mesh.pe_{r}_{c}"
                                        for r in range(rows) for c in range(cols))
        return len({anonymous(text, name) for name, text in leaves.items()})

    assert kinds(6, 6, "os") == kinds(10, 10, "os") <= 9
    assert kinds(8, 8, "ws") <= 3 * 8
