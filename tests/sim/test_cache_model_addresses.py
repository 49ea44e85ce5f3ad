"""The cache model sees only the low ``addr_bits`` bits of an address, under every policy:
addresses that differ only above them are the same line (also to OPT's next-use oracle,
which Python computes apart from the C kernel). The seed is printed and can be set with
HWLOOP_SEED."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hwloop.hdl.cache.params import CacheConfig
from hwloop.sim.cache.model import TRACE_DTYPE, simulate

SEED = int(os.environ.get("HWLOOP_SEED", "1234"))


@pytest.mark.parametrize("policy", ["lru", "plru", "srrip", "random", "opt"])
def test_bits_above_addr_bits_are_ignored(policy):
    print(f"HWLOOP_SEED={SEED}")
    rng = np.random.default_rng(SEED)
    config = CacheConfig(sets=4, ways=2, line_bytes=16, addr_bits=16, policy=policy)
    n = 4000
    low = np.zeros(n, TRACE_DTYPE)
    low["addr"] = rng.integers(0, 48, n) * 16 + rng.integers(0, 16, n)  # 48 lines, 8 slots
    low["pc"] = 0x400000
    low["write"] = rng.random(n) < 0.3
    high = low.copy()
    high["addr"] |= rng.integers(1, 1 << 40, n, dtype=np.uint64) << np.uint64(16)
    plain, aliased = simulate(config, low), simulate(config, high)
    assert 0 < plain.hits < n, policy
    assert plain.counters() == aliased.counters(), (SEED, policy)
    np.testing.assert_array_equal(plain.hit, aliased.hit)
    np.testing.assert_array_equal(plain.victim, aliased.victim)
