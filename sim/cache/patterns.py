"""Synthetic cache traces (adversarial patterns, seeded) for tests and regressions."""

from __future__ import annotations

import numpy as np

TRACE_DTYPE = np.dtype([("pc", "<u8"), ("addr", "<u8"), ("write", "u1")])


def adversarial(n: int, *, seed: int, sets: int, line_bytes: int) -> np.ndarray:
    """n accesses in blocks of: random reuse, one hot set, strided conflicts, a long scan,
    and per-PC strided streams (for the stride prefetcher); ~30% writes."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, TRACE_DTYPE)
    block = 4096
    set_span = sets * line_bytes
    for start in range(0, n, block):
        m = min(block, n - start)
        kind = rng.integers(0, 5)
        if kind == 0:    # random reuse within 4x the cache
            addr = rng.integers(0, 4 * set_span * 4, m) & ~3
        elif kind == 1:  # one hot set: many tags mapping to set 3
            addr = (rng.integers(0, 24, m) * set_span + 3 * line_bytes).astype(np.int64)
        elif kind == 2:  # strided conflicts across a few sets
            addr = (np.arange(m) % 37) * set_span * 2 + (np.arange(m) % 3) * line_bytes
        elif kind == 3:  # scan far larger than the cache
            addr = start * line_bytes + np.arange(m) * (line_bytes // 2)
        else:            # interleaved per-PC streams with different strides
            streams = rng.integers(0, 4, m)
            steps = np.array([1, 2, -1, 5]) * line_bytes
            addr = np.zeros(m, np.int64)
            counters = np.zeros(4, np.int64)
            for i, s in enumerate(streams):
                counters[s] += 1
                addr[i] = (1 << 20) + s * (1 << 16) + counters[s] * steps[s]
        out["addr"][start:start + m] = np.asarray(addr, np.int64).astype(np.uint64)
        pcs = 0x400000 + rng.integers(0, 32, m) * 4
        if kind == 4:
            pcs = 0x500000 + streams * 4
        out["pc"][start:start + m] = pcs.astype(np.uint64)
    out["write"] = rng.random(n) < 0.3
    return out


def gaps(n: int, *, seed: int) -> np.ndarray:
    """Idle cycles before each access: mostly back-to-back, sometimes 1..15."""
    rng = np.random.default_rng(seed + 1)
    g = rng.integers(1, 16, n)
    return np.where(rng.random(n) < 0.1, g, 0).astype(np.uint8)
