"""RTL vs golden model, bit-exact (hits, ways, victims, writebacks, prefetch counters)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


def _config(policy: str, *, seed: int = 1, table: Path | None = None,
            prefetch: str | None = None) -> CacheConfig:
    # srrip+nextline uses real 48-bit addresses: its build also replays the captured trace
    bits = 48 if (policy, prefetch) == ("srrip", "nextline") else 32
    return CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=bits, policy=policy,
                       seed=seed, table=table)


def _prefetch(kind: str | None, table: Path) -> PrefetcherConfig | None:
    if kind is None:
        return None
    return PrefetcherConfig(kind=kind, degree=2, latency=3, queue=4, entries=16,
                            table=table if kind == "table" else None)


CASES = [
    ("lru", None), ("plru", None), ("srrip", None), ("random", None), ("table", None),
    ("srrip", "nextline"), ("lru", "stride"), ("plru", "table"),
]


@pytest.mark.parametrize(("policy", "prefetch"), [
    pytest.param(p, k, id=f"{p}-{k or 'none'}",
                 marks=[pytest.mark.xdist_group(f"cache-{p}-{k or 'none'}")]) for p, k in CASES])
def test_rtl_matches_model_bit_exact(policy, prefetch, tmp_path):
    seed = SEED + CASES.index((policy, prefetch))
    print(f"seed={seed} policy={policy} prefetch={prefetch}")
    rt, pt = _tables(tmp_path, seed)
    config = _config(policy, seed=(seed % 65535) + 1, table=rt if policy == "table" else None,
                     prefetch=prefetch)
    pf = _prefetch(prefetch, pt)
    trace = adversarial(N, seed=seed, sets=16, line_bytes=16)
    model, rtl, diff = check(config, trace, prefetch=pf, gaps=gaps(N, seed=seed))
    assert diff is None, f"seed={seed}: {diff}"
    # the comparison is not vacuous: the trace hits, misses, evicts and writes back
    assert 0 < model.hits < N and model.evictions > 0 and model.writebacks > 0
    if pf is not None:
        assert model.prefetch_issued > 0 and model.prefetch_useful > 0


@pytest.mark.xdist_group("cache-lru-none")
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


@pytest.mark.xdist_group("cache-lru-none")
def test_a_relative_workdir(tmp_path, monkeypatch):
    """The simulator runs in its work folder and finds its job file by the path it is given:
    a path relative to the caller's folder was not found there ("produced no result")."""
    monkeypatch.chdir(tmp_path)
    trace = adversarial(2_000, seed=SEED, sets=16, line_bytes=16)
    config = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy="lru")
    model, rtl, diff = check(config, trace, workdir=Path("rel"))
    assert diff is None and rtl.result.accesses == 2_000
    assert (tmp_path / "rel" / "rtl.npz").is_file()


@pytest.mark.xdist_group("cache-srrip-nextline")
def test_rtl_on_a_captured_trace(tmp_path):
    """A real program's trace: traces/ (`make traces`), else capture the sort recipe now."""
    folder = Path(__file__).resolve().parents[2] / "traces"
    files = sorted(folder.glob("*.trace")) if folder.exists() else []
    if not files:
        if shutil.which("valgrind") is None:
            pytest.skip("no traces/ (run `make traces`) and no valgrind to capture one")
        proc = subprocess.run([sys.executable, "-m", "hwloop", "trace", "recipes", "sort",
                               "-o", str(tmp_path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        files = sorted(tmp_path.glob("*.trace"))
    from hwloop.traces import read_trace

    trace = read_trace(files[0])[:N]
    print(f"trace={files[0]} accesses={trace.size}")
    config = _config("srrip", prefetch="nextline")
    model, _, diff = check(config, trace, prefetch=_prefetch("nextline", tmp_path))
    assert diff is None, diff
    assert model.misses > 0 and model.prefetch_issued > 0
