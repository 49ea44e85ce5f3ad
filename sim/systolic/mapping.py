"""GEMM layers and their mapping (scratchpad-level tiling) onto a systolic-array accelerator.

A mapping is a software parameter: it says how a GEMM ``C[m,n] = sum_k A[m,k] * B[k,n]`` is cut
into scratchpad tiles of ``tile_m x tile_n x tile_k`` and in which order the tiles are visited.
Tiles are double-buffered in every scratchpad (one half computes while the other loads or
drains), so a tile must fit in half of each scratchpad.

Tile rules: the output-stationary array (``os``) takes the m dimension in blocks of ``rows`` and n
in blocks of ``cols``, so ``tile_m`` is a multiple of ``rows`` and ``tile_n`` of ``cols``; the
weight-stationary array (``ws``) holds a ``rows x cols`` block of B (k x n), so ``tile_k`` is a
multiple of ``rows`` and ``tile_n`` of ``cols``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from hwloop.errors import ParameterError
from hwloop.validate import is_int, plain_ints

#: Legal tile loop orders, outermost first. k is innermost so that an output tile is finished in
#: consecutive steps and its accumulators never leave the chip half-done.
ORDERS: tuple[str, ...] = ("mnk", "nmk")


@dataclass(frozen=True, kw_only=True)
class Gemm:
    """``C[m,n] = sum_k A[m,k] * B[k,n]``."""

    m: int
    n: int
    k: int

    def __post_init__(self) -> None:
        plain_ints(self, "m", "n", "k")  # numpy integers are stored as int
        for name in ("m", "n", "k"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ParameterError(f"gemm {name} must be a positive integer, not {value!r}")

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k

    def to_dict(self) -> dict[str, int]:
        return {"m": self.m, "n": self.n, "k": self.k}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Gemm:
        unknown = sorted(set(d) - {"m", "n", "k"})
        if unknown:
            raise ParameterError(f"unknown gemm field {unknown[0]!r}")
        return cls(m=d.get("m"), n=d.get("n"), k=d.get("k"))  # type: ignore[arg-type]


def elem_bytes(params: Any) -> int:
    """Bytes of the container of one input or weight element (8- or 16-bit)."""
    return 1 if params.in_bits <= 8 else 2


def acc_bytes(params: Any) -> int:
    """Bytes of the container of one accumulator (32- or 64-bit)."""
    return 4 if params.acc_bits <= 32 else 8


def out_field_bits(params: Any) -> int:
    """Bits of one stored output: ``out_bits`` with requantization, else ``acc_bits``."""
    return params.acc_bits if params.out_bits is None else params.out_bits


def out_bytes(params: Any) -> int:
    """Bytes of the container of one stored output: the accumulator's without requantization,
    else 1, 2, 4 or 8 for ``out_bits`` up to 8, 16, 32 or 64."""
    bits = getattr(params, "out_bits", None)
    if bits is None:
        return acc_bytes(params)
    return next(size for size in (1, 2, 4, 8) if bits <= 8 * size)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def tile_steps(params: Any) -> dict[str, int]:
    """The granule each tile dimension must be a multiple of, for ``params.dataflow``."""
    if params.dataflow == "os":
        return {"tile_m": params.rows, "tile_n": params.cols, "tile_k": 1}
    return {"tile_m": 1, "tile_n": params.cols, "tile_k": params.rows}


def padded_dims(params: Any, gemm: Gemm) -> tuple[int, int, int]:
    """The layer's m, n, k rounded up to the tile granules (zero padding in external memory)."""
    steps = tile_steps(params)
    return (_round_up(gemm.m, steps["tile_m"]), _round_up(gemm.n, steps["tile_n"]),
            _round_up(gemm.k, steps["tile_k"]))


@dataclass(frozen=True, kw_only=True)
class Mapping:
    """Scratchpad tiles of ``tile_m x tile_n x tile_k`` visited in loop ``order`` (e.g. "mnk")."""

    tile_m: int
    tile_n: int
    tile_k: int
    order: str = "mnk"

    def __post_init__(self) -> None:
        plain_ints(self, "tile_m", "tile_n", "tile_k")  # numpy integers are stored as int
        for name in ("tile_m", "tile_n", "tile_k"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ParameterError(f"mapping {name} must be a positive integer, not {value!r}")
        if self.order not in ORDERS:
            raise ParameterError(
                f"mapping order must be one of {', '.join(ORDERS)}, not {self.order!r}")

    def fit_to(self, params: Any, gemm: Gemm) -> Mapping:
        """This mapping with tiles rounded up to the array granules and clipped to the layer."""
        steps = tile_steps(params)
        padded = dict(zip(("tile_m", "tile_n", "tile_k"), padded_dims(params, gemm), strict=True))
        fitted = {name: min(_round_up(getattr(self, name), steps[name]), padded[name])
                  for name in steps}
        return Mapping(**fitted, order=self.order)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mapping:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ParameterError(f"unknown mapping field {unknown[0]!r}")
        missing = sorted({"tile_m", "tile_n", "tile_k"} - set(d))
        if missing:
            raise ParameterError(f"mapping is missing {missing[0]!r}")
        return cls(**d)


@dataclass(frozen=True)
class ScratchpadGeometry:
    """Rows and row widths of the three scratchpads of a design (what the hardware builds)."""

    ifmap_row_bytes: int
    weight_row_bytes: int
    acc_row_bytes: int
    ifmap_rows: int
    weight_rows: int
    acc_rows: int


def scratchpad_geometry(params: Any) -> ScratchpadGeometry:
    """Each scratchpad holds whole rows: ``rows`` inputs, ``cols`` weights, ``cols`` sums."""
    e, a = elem_bytes(params), acc_bytes(params)
    ifmap_row, weight_row, acc_row = params.rows * e, params.cols * e, params.cols * a
    return ScratchpadGeometry(
        ifmap_row_bytes=ifmap_row, weight_row_bytes=weight_row, acc_row_bytes=acc_row,
        ifmap_rows=params.ifmap_kib * 1024 // ifmap_row,
        weight_rows=params.weight_kib * 1024 // weight_row,
        acc_rows=params.acc_kib * 1024 // acc_row,
    )


def tile_rows(params: Any, mapping: Mapping) -> tuple[int, int, int]:
    """Scratchpad rows one tile of ``mapping`` (already fitted) occupies: ifmap, weight, acc."""
    if params.dataflow == "os":
        ifmap = (mapping.tile_m // params.rows) * mapping.tile_k
    else:
        ifmap = (mapping.tile_k // params.rows) * mapping.tile_m
    weight = (mapping.tile_n // params.cols) * mapping.tile_k
    acc = (mapping.tile_n // params.cols) * mapping.tile_m
    return ifmap, weight, acc


def _kib(nbytes: int) -> str:
    return f"{nbytes / 1024:g}"


def check_mapping(params: Any, gemm: Gemm, mapping: Mapping) -> None:
    """Raise ParameterError saying why ``mapping`` cannot run ``gemm`` on ``params``."""
    steps = tile_steps(params)
    granule_of = {"tile_m": "rows", "tile_n": "cols", "tile_k": "rows"}
    for name, step in steps.items():
        value = getattr(mapping, name)
        if value % step:
            raise ParameterError(
                f"mapping {name}={value} must be a multiple of {granule_of[name]}={step} "
                f"on the {params.dataflow} dataflow")
    fitted = mapping.fit_to(params, gemm)
    geo = scratchpad_geometry(params)
    ifmap, weight, acc = tile_rows(params, fitted)
    checks = (
        ("ifmap", ifmap, geo.ifmap_rows, geo.ifmap_row_bytes, params.ifmap_kib,
         f"tile_m={fitted.tile_m} tile_k={fitted.tile_k}"),
        ("weight", weight, geo.weight_rows, geo.weight_row_bytes, params.weight_kib,
         f"tile_k={fitted.tile_k} tile_n={fitted.tile_n}"),
        ("accumulator", acc, geo.acc_rows, geo.acc_row_bytes, params.acc_kib,
         f"tile_m={fitted.tile_m} tile_n={fitted.tile_n}"),
    )
    for what, need_rows, have_rows, row_bytes, have_kib, tiles in checks:
        if 2 * need_rows > have_rows:
            raise ParameterError(
                f"mapping {tiles} needs {_kib(2 * need_rows * row_bytes)} KiB of {what} "
                f"scratchpad (double-buffered), have {have_kib}")


def _candidates(limit: int, step: int) -> list[int]:
    values = {limit}
    v = step
    while v < limit:
        values.add(v)
        v *= 2
    return sorted(values)


#: The chooser skips mappings with more scratchpad tiles than this (once one fits): tiny tiles
#: never win (they lose operand reuse) and cost model time; if no other fits, the fitting
#: mapping with the fewest tiles is taken unmodelled.
_MAX_TILES = 256


def default_mapping(params: Any, gemm: Gemm) -> Mapping:
    """The fitting mapping with the fewest model cycles (ties: fewer external-memory bytes)."""
    # the dimension without an array granule (ws m, os k) starts at 8; only where nothing
    # fits does the chooser try again from 1 (tiles of 1, 2 or 4 m rows or k steps)
    for start in (8, 1):
        chosen = _choose(params, gemm, start)
        if chosen is not None:
            return chosen
    raise ParameterError(
        f"no mapping of gemm m={gemm.m} n={gemm.n} k={gemm.k} fits the scratchpads of "
        f"{params.name}")


def _choose(params: Any, gemm: Gemm, start: int) -> Mapping | None:
    """``default_mapping``'s choice with the ungranular dimension from ``start`` up, or None."""
    from hwloop.sim.systolic.model import model_gemm
    from hwloop.sim.systolic.program import tile_counts

    steps = tile_steps(params)
    pm, pn, pk = padded_dims(params, gemm)
    best: tuple[tuple[int, int], Mapping] | None = None
    fallback: tuple[int, Mapping] | None = None
    for tm in _candidates(pm, steps["tile_m"] if steps["tile_m"] > 1 else start):
        for tn in _candidates(pn, steps["tile_n"]):
            for tk in _candidates(pk, steps["tile_k"] if steps["tile_k"] > 1 else start):
                for order in ORDERS:
                    mapping = Mapping(tile_m=tm, tile_n=tn, tile_k=tk, order=order).fit_to(
                        params, gemm)
                    counts = tile_counts(params, gemm, mapping)
                    if order != ORDERS[0] and 1 in (counts["m"], counts["n"]):
                        continue  # a single m or n step: the same program as the first order
                    tiles = math.prod(counts.values())
                    try:
                        check_mapping(params, gemm, mapping)
                    except ParameterError:
                        continue
                    if tiles > _MAX_TILES:
                        if fallback is None or tiles < fallback[0]:
                            fallback = (tiles, mapping)
                        continue
                    run = model_gemm(params, gemm, mapping)
                    score = (run.cycles, run.actions["dram_read_bytes"])
                    if best is None or score < best[0]:
                        best = (score, mapping)
    if best is None:
        return None if fallback is None else fallback[1]
    return best[1]
