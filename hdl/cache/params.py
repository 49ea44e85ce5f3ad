"""The parameters of a set-associative cache (generator and golden model), validated."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwloop.errors import ParameterError
from hwloop.validate import check_int, check_known, check_pow2, plain_ints

#: Replacement policies. ``opt`` (Belady) exists only in the golden model.
#: the line address width of a prefetcher generated alone, by default: 48-bit byte addresses
#: of 64-byte lines (a cache's prefetcher takes its cache's)
PREFETCHER_LINE_BITS = 42

POLICIES = ("lru", "plru", "srrip", "random", "table", "opt")
RTL_POLICIES = ("lru", "plru", "srrip", "random", "table")


def log2(value: int) -> int:
    return value.bit_length() - 1


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    """A write-back, write-allocate set-associative cache.

    ``sets`` sets (power of two) of ``ways`` ways holding lines of ``line_bytes`` bytes
    (power of two), addressed by the low ``addr_bits`` bits of a byte address. ``policy`` picks
    the victim (see docs/caches.md for the exact semantics of each); ``seed`` seeds the LFSR of
    ``random``; ``table`` is the table file of the ``table`` policy.
    """

    sets: int
    ways: int
    line_bytes: int
    addr_bits: int = 48
    policy: str = "lru"
    seed: int = 1
    table: str | Path | None = None

    def __post_init__(self) -> None:
        plain_ints(self, "sets", "ways", "line_bytes", "addr_bits", "seed")  # numpy ints: int
        check_pow2("sets", self.sets)
        if self.sets > 1 << 20:
            raise ParameterError(f"sets must be at most {1 << 20}, not {self.sets}")
        check_int("ways", self.ways, 1, 64)
        check_pow2("line_bytes", self.line_bytes)
        if self.line_bytes > 4096:
            raise ParameterError(f"line_bytes must be at most 4096, not {self.line_bytes}")
        check_int("addr_bits", self.addr_bits, 8, 64)
        if self.policy not in POLICIES:
            raise ParameterError(
                f"unknown policy {self.policy!r} (have {', '.join(POLICIES)})")
        if self.tag_bits < 1:
            raise ParameterError(
                f"addr_bits={self.addr_bits} leaves no tag bits for {self.sets} sets of "
                f"{self.line_bytes}-byte lines")
        if self.policy == "plru" and self.ways & (self.ways - 1):
            raise ParameterError(f"plru needs ways to be a power of two, not {self.ways}")
        check_int("seed", self.seed, 1, 65535)
        if self.policy == "table" and self.table is None:
            raise ParameterError("policy 'table' needs a table file (--table FILE)")
        if self.policy != "table" and self.table is not None:
            raise ParameterError(
                f"a table file is only used by policy 'table', not {self.policy!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CacheConfig:
        check_known(values, cls, "cache")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["table"] = None if self.table is None else str(self.table)
        return values

    @property
    def offset_bits(self) -> int:
        return log2(self.line_bytes)

    @property
    def index_bits(self) -> int:
        return log2(self.sets)

    @property
    def tag_bits(self) -> int:
        return self.addr_bits - self.offset_bits - self.index_bits

    @property
    def size_bytes(self) -> int:
        return self.sets * self.ways * self.line_bytes

    @property
    def name(self) -> str:
        """A Verilog-safe module name that says what the design is. Every parameter that
        changes the Verilog is in it: the address width (``_a<bits>``) and the random
        policy's LFSR seed (``_seed<n>``) where they differ from the defaults (a table's hash
        is added by ``generate.design_name``)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        addr = "" if self.addr_bits == defaults["addr_bits"] else f"_a{self.addr_bits}"
        seed = (f"_seed{self.seed}" if self.policy == "random" and self.seed != defaults["seed"]
                else "")
        return f"cache_{self.sets}s{self.ways}w{self.line_bytes}b_{self.policy}{addr}{seed}"
