"""The systolic-array accelerator generator (Amaranth → Verilog)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path

from hwloop.hdl.systolic.params import SystolicParams


@functools.cache
def generator_digest() -> str:
    """Hash of the generator's sources: this package and the two modules it reads its
    instruction format and scratchpad geometry from. Verilog and area results cached by
    parameters are keyed by it, so a changed generator reuses neither. Once per process: the
    code a process generates with is the code it imported."""
    from hwloop.sim.systolic import mapping, program

    paths = [*sorted(Path(__file__).parent.glob("*.py")), Path(program.__file__),
             Path(mapping.__file__)]
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def generate_verilog(params: SystolicParams) -> str:
    """Verilog of the accelerator; the top module is named ``params.name``."""
    import os

    from amaranth.back import verilog

    from hwloop.hdl.systolic.accelerator import SystolicAccelerator
    from hwloop.toolchain import yosys_command

    # Amaranth runs "yosys" from PATH or $YOSYS; ours is YoWASP's from PyPI.
    os.environ.setdefault("YOSYS", yosys_command()[0])

    top = SystolicAccelerator(params=params)
    with _zero_memory_contents_not_emitted():
        return verilog.convert(top, name=params.name, emit_src=False)


@contextlib.contextmanager
def _zero_memory_contents_not_emitted() -> Iterator[None]:
    """Memories whose contents are all zero get no initial contents.

    Scratchpads need no reset contents (the program never reads a row it did not write), and
    their all-zero initial blocks would be most of the Verilog and of Verilator's build time.
    Amaranth's RTLIL back end also spells those contents out bit by bit: for 64 KiB scratchpads
    about half of the conversion time. Any other memory is emitted as Amaranth does."""
    from amaranth.back import rtlil

    emit_memory = rtlil.ModuleEmitter.emit_memory

    def emit_nonzero_memory(self, cell_idx, cell):
        if any(cell.init):
            emit_memory(self, cell_idx, cell)

    rtlil.ModuleEmitter.emit_memory = emit_nonzero_memory
    try:
        yield
    finally:
        rtlil.ModuleEmitter.emit_memory = emit_memory


def ports(params: SystolicParams) -> list[dict]:
    """The top module's ports: ``[{"name", "direction", "width"}, ...]`` (clk and rst first)."""
    from hwloop.hdl.systolic.accelerator import SystolicAccelerator
    from hwloop.manifest import component_ports

    return component_ports(SystolicAccelerator(params=params))


__all__ = ["SystolicParams", "generate_verilog", "ports"]
