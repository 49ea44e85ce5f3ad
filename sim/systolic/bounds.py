"""Lower bounds on a layer's cycles, one per resource, and which one limits it.

A layer cannot take fewer cycles than any one resource needs for its work:

- ``compute``: the array's feed cycles. Every feed streams one element through all
  ``rows x cols`` PEs, padded ones included, so the array tiles of the padded GEMM times their
  streaming length (the fold bound) is the padded MACs over the PEs.
- ``read``: the bus's read data path, shared by the A and B rows. A beat carries as many whole
  rows as fit in ``bus_bytes`` and takes ``ceil(row bytes / bus_bytes)`` cycles, so the rows
  loaded take at least ``ceil(rows / rows per beat)`` beats of each kind.
- ``write``: the write data path; a stored C row (``cols`` sums, or requantized outputs)
  takes ``ceil(row bytes / bus_bytes)`` cycles.

They are computed from a run's action counts (the RTL's counters at RTL fidelity, the model's
at model fidelity), so they count the work of the mapping actually run: a mapping that loads
operands twice raises ``read``. The cycles above the largest bound are what no single
resource explains: memory latency, fill and drain of the array, and waits between resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwloop.sim.systolic.mapping import elem_bytes, out_bytes
from hwloop.sim.systolic.program import cycles_per_beat, rows_per_beat

#: The resources bounded, in the order they are reported.
RESOURCES = ("compute", "read", "write")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def cycle_bounds(params: Any, actions: Mapping[str, int]) -> dict[str, int]:
    """Each resource's lower bound on the cycles of a run with these ``actions``."""
    R, C, bus = params.rows, params.cols, params.bus_bytes
    e = elem_bytes(params)
    a_rows = actions["ifmap_sram_write"] // R
    b_rows = actions["weight_sram_write"] // C
    c_row_bytes = C * out_bytes(params)
    c_rows = actions["dram_write_bytes"] // c_row_bytes
    read = sum(_ceil_div(rows, rows_per_beat(width * e, bus)) * cycles_per_beat(width * e, bus)
               for rows, width in ((a_rows, R), (b_rows, C)))
    return {"compute": _ceil_div(actions["mac"], R * C), "read": read,
            "write": c_rows * cycles_per_beat(c_row_bytes, bus)}


def limiting(bounds: Mapping[str, int]) -> str:
    """The resource with the largest bound (the first of :data:`RESOURCES` on a tie)."""
    return max(RESOURCES, key=lambda name: bounds[name])
