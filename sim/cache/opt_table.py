"""Build a replacement table from Belady's decisions on a trace (offline Hawkeye).

Hawkeye learns, per PC, whether Belady's OPT would keep the lines that PC touches. Offline we
can ask OPT directly: access i is *friendly* if its line's next use hits under OPT (OPT kept
the line until then), *averse* otherwise (never reused, or OPT evicted it first). Each table
entry (the index of the ``table`` policy: hash of the PC and the previous PCs) gets
``(2**k - 1) * averse / (friendly + averse)`` rounded, so the policy inserts friendly PCs'
lines at RRPV 0 and averse ones at RRPV 7; entries never seen get the middle value.
"""

from __future__ import annotations

import numpy as np

from hwloop.hdl.cache.params import CacheConfig
from hwloop.hdl.cache.table import Table, make_table

from .model import NEVER, simulate


def _fold(values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(values.shape, dtype=np.uint64)
    if n == 0:
        return out
    mask = np.uint64((1 << n) - 1)
    x = values.astype(np.uint64) >> np.uint64(2)
    for _ in range(0, 64, n):
        out ^= x & mask
        x = x >> np.uint64(n)
    return out


def table_indices(pcs: np.ndarray, *, entries: int, history: int) -> np.ndarray:
    """The table index of every access (same hash as the RTL and the C model)."""
    n = entries.bit_length() - 1
    folded = _fold(np.asarray(pcs, dtype=np.uint64), n)
    index = folded.copy()
    if n == 0:
        return index.astype(np.int64)
    mask = np.uint64((1 << n) - 1)
    for j in range(1, history + 1):
        previous = np.concatenate([np.zeros(j, np.uint64), folded[:-j]])
        r = j % n
        if r:
            previous = ((previous << np.uint64(r)) | (previous >> np.uint64(n - r))) & mask
        index ^= previous
    return index.astype(np.int64)


def opt_table(config: CacheConfig, trace: np.ndarray, *, entries: int = 2048,
              entry_bits: int = 5, history: int = 0) -> Table:
    """A replacement table for ``config`` trained on Belady's decisions over ``trace``."""
    opt = CacheConfig(**{**config.to_dict(), "policy": "opt", "table": None})
    result = simulate(opt, trace)
    from .model import next_use

    mask = np.uint64((1 << config.addr_bits) - 1) if config.addr_bits < 64 else ~np.uint64(0)
    lines = (np.asarray(trace["addr"], np.uint64) & mask) >> np.uint64(config.offset_bits)
    nxt = next_use(lines)
    reused = nxt != NEVER
    friendly = np.zeros(trace.size, dtype=bool)
    friendly[reused] = result.hit[nxt[reused]]
    index = table_indices(trace["pc"], entries=entries, history=history)
    good = np.bincount(index, weights=friendly, minlength=entries)
    seen = np.bincount(index, minlength=entries)
    top = (1 << entry_bits) - 1
    values = np.full(entries, (top + 1) // 2, dtype=np.int64)
    hit = seen > 0
    values[hit] = np.rint(top * (1 - good[hit] / seen[hit])).astype(np.int64)
    return make_table(kind="replacement", entry_bits=entry_bits, history=history, values=values)
