"""RTL vs golden model, bit-exact (hits, ways, victims, writebacks, prefetch counters)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hwloop.hdl.cache.params import CacheConfig
from hwloop.hdl.cache.prefetcher import PrefetcherConfig
from hwloop.hdl.cache.table import make_table, save_table
from hwloop.sim.cache.player import check, run_player

from .test_cache_support import adversarial, gaps

pytestmark = pytest.mark.rtl

N = 100_000
SEED = int(os.environ.get("HWLOOP_TEST_SEED", "20261121"))


def _tables(folder: Path, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    rt = folder / "replacement.npz"
    save_table(rt, make_table(kind="replacement", entry_bits=5, history=2,
                              values=rng.integers(0, 32, 256)))
    pt = folder / "prefetch.npz"
    save_table(pt, make_table(kind="prefetch", entry_bits=6, history=1,
                              values=rng.integers(-4, 5, 64), confidence=rng.integers(0, 4, 64)))
    return rt, pt


CASES = [
    ("lru", None), ("plru", None), ("srrip", None), ("random", None), ("table", None),
    ("srrip", "nextline"), ("lru", "stride"), ("plru", "table"),
]


@pytest.mark.parametrize(("policy", "prefetch"), CASES,
                         ids=[f"{p}-{k or 'none'}" for p, k in CASES])
def test_rtl_matches_model_bit_exact(policy, prefetch, tmp_path):
    seed = SEED + CASES.index((policy, prefetch))
    print(f"seed={seed} policy={policy} prefetch={prefetch}")
    rt, pt = _tables(tmp_path, seed)
    config = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy=policy,
                         seed=(seed % 65535) + 1, table=rt if policy == "table" else None)
    pf = None
    if prefetch:
        pf = PrefetcherConfig(kind=prefetch, degree=2, latency=3, queue=4, entries=16,
                              table=pt if prefetch == "table" else None)
    trace = adversarial(N, seed=seed, sets=16, line_bytes=16)
    model, rtl, diff = check(config, trace, prefetch=pf, gaps=gaps(N, seed=seed))
    assert diff is None, f"seed={seed}: {diff}"
    # the comparison is not vacuous: the trace hits, misses, evicts and writes back
    assert 0 < model.hits < N and model.evictions > 0 and model.writebacks > 0
    if pf is not None:
        assert model.prefetch_issued > 0 and model.prefetch_useful > 0


def test_rtl_comparison_detects_a_difference(tmp_path):
    """A model of another policy must disagree with the RTL (the check can fail)."""
    trace = adversarial(20_000, seed=SEED, sets=16, line_bytes=16)
    config = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy="lru")
    rtl = run_player(config, trace)
    from hwloop.sim.cache.model import simulate
    from hwloop.sim.cache.player import compare

    assert compare(simulate(config, trace), rtl.result) is None
    other = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy="plru")
    assert compare(simulate(other, trace), rtl.result) is not None


def test_rtl_on_a_captured_trace(tmp_path):
    folder = Path(__file__).resolve().parents[2] / "traces"
    files = sorted(folder.glob("*.trace")) if folder.exists() else []
    if not files:
        pytest.skip("no captured traces (run `make traces`)")
    from hwloop.traces import read_trace

    trace = read_trace(files[0])[:N]
    print(f"trace={files[0].name} accesses={trace.size}")
    config = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=48, policy="srrip")
    _, _, diff = check(config, trace)
    assert diff is None, diff
