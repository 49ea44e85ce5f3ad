"""The parameters of the systolic-array accelerator generator, validated on construction."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from hwloop.errors import ParameterError
from hwloop.validate import check_int, check_known, check_pow2, plain_ints

DATAFLOWS = ("os", "ws")


@dataclass(frozen=True, kw_only=True)
class SystolicParams:
    """A systolic-array accelerator: PE mesh, controller, scratchpads and DMA.

    ``rows`` x ``cols`` PEs; ``dataflow`` ``"os"`` (output-stationary) or ``"ws"``
    (weight-stationary); signed ``in_bits`` inputs and weights; two's-complement accumulators
    that wrap at ``acc_bits``; scratchpads of ``ifmap_kib``, ``weight_kib`` and ``acc_kib``
    KiB; an external memory bus of ``bus_bytes`` bytes per cycle whose reads return after
    ``mem_latency`` cycles. ``out_bits`` None: C is written back as the wrapped ``acc_bits``
    sums; an integer: every stored sum is requantized to a signed ``out_bits`` integer (a
    run-time right shift with rounding, then saturation; see ``golden.requantize``).
    ``read_ahead``: the DMA may leave an instruction's A responses to arrive under the next
    instruction, which computes on them as they are written (hides the memory latency where
    loads outlast the computes; ~1,000 logic cells more, and ~4% slower to simulate).
    """

    rows: int = 8
    cols: int = 8
    dataflow: str = "os"
    in_bits: int = 8
    acc_bits: int = 32
    ifmap_kib: int = 64
    weight_kib: int = 64
    acc_kib: int = 64
    bus_bytes: int = 16
    mem_latency: int = 20
    out_bits: int | None = None
    read_ahead: bool = False

    def __post_init__(self) -> None:
        # numpy integers (a sweep) are stored as int: to_dict and params_hash need plain ints
        plain_ints(self, "rows", "cols", "in_bits", "acc_bits", "ifmap_kib", "weight_kib",
                   "acc_kib", "bus_bytes", "mem_latency", "out_bits")
        check_int("rows", self.rows, 1, 64)
        check_int("cols", self.cols, 1, 64)
        if self.dataflow not in DATAFLOWS:
            raise ParameterError(
                f"dataflow must be one of {', '.join(DATAFLOWS)}, not {self.dataflow!r}")
        check_int("in_bits", self.in_bits, 2, 16)
        check_int("acc_bits", self.acc_bits, 2 * self.in_bits, 64)
        check_int("ifmap_kib", self.ifmap_kib, 1, 65536)
        check_int("weight_kib", self.weight_kib, 1, 65536)
        check_int("acc_kib", self.acc_kib, 1, 65536)
        check_pow2("bus_bytes", self.bus_bytes, 1, 128)
        check_int("mem_latency", self.mem_latency, 0, 1000)
        if self.out_bits is not None:
            check_int("out_bits", self.out_bits, 2, self.acc_bits)
        if not isinstance(self.read_ahead, bool):
            raise ParameterError(f"read_ahead must be true or false, not {self.read_ahead!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SystolicParams:
        check_known(values, cls, "systolic")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def name(self) -> str:
        """A Verilog-safe module name that says what the design is. Every parameter that
        changes the Verilog is in it, so two designs in one flow never share a module name:
        the scratchpads (``_s<ifmap>_<weight>_<acc>``, KiB) and the bus (``_bus<bytes>``) only
        where they differ from the defaults. ``mem_latency`` is the harness's, not the
        accelerator's."""
        out = "" if self.out_bits is None else f"o{self.out_bits}"
        ahead = "_ra" if self.read_ahead else ""
        spads = (self.ifmap_kib, self.weight_kib, self.acc_kib)
        sizes = "" if spads == _DEFAULT_SPADS else "_s" + "_".join(map(str, spads))
        bus = "" if self.bus_bytes == _DEFAULT_BUS else f"_bus{self.bus_bytes}"
        return (f"systolic_{self.rows}x{self.cols}_{self.dataflow}_i{self.in_bits}"
                f"a{self.acc_bits}{out}{ahead}{sizes}{bus}")

    @property
    def params_hash(self) -> str:
        values = self.to_dict()
        if values["out_bits"] is None:  # designs without requantization keep their hash
            del values["out_bits"]
        if not values["read_ahead"]:  # as do designs without read-ahead
            del values["read_ahead"]
        text = json.dumps(values, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SystolicParams)}
_DEFAULT_SPADS = (_DEFAULTS["ifmap_kib"], _DEFAULTS["weight_kib"], _DEFAULTS["acc_kib"])
_DEFAULT_BUS = _DEFAULTS["bus_bytes"]
