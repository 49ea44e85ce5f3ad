"""RTL vs golden model, bit-exact (hits, ways, victims, writebacks, prefetch counters)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwloop.errors import ParameterError
from hwloop.hdl.cache.params import CacheConfig
from hwloop.hdl.cache.prefetcher import PrefetcherConfig
from hwloop.hdl.cache.table import make_table, save_table
from hwloop.sim.cache.model import simulate
from hwloop.sim.cache.player import check, compare, run_player

from .test_cache_support import TRACE_DTYPE, adversarial, gaps

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
    assert compare(simulate(config, trace), rtl.result) is None
    other = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy="plru")
    assert compare(simulate(other, trace), rtl.result) is not None


@pytest.mark.xdist_group("cache-lru-none")
def test_rtl_takes_any_nonzero_write_flag_as_a_write(tmp_path):
    """A write flag is nonzero, not 1 (the model and .trace files): the player kept only bit 0
    of it, so a flag of 2 was a read to the RTL and its eviction no writeback."""
    n = 2_000
    rng = np.random.default_rng(SEED)
    print(f"seed={SEED}")
    trace = np.zeros(n, TRACE_DTYPE)
    trace["addr"] = rng.integers(0, 6, n) * (16 * 16)  # six lines of set 0: 4 ways thrash
    trace["write"] = rng.choice(np.array([0, 2, 4, 128, 255], np.uint8), n)
    config = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy="lru")
    model, rtl, diff = check(config, trace, workdir=tmp_path)
    assert diff is None, diff
    flags_01 = trace.copy()
    flags_01["write"] = trace["write"] != 0
    assert compare(simulate(config, flags_01), rtl.result) is None
    assert model.writebacks > 0


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


def _small_space_trace(n: int, seed: int, *, line_bytes: int, line_bits: int) -> np.ndarray:
    """One PC walking lines a, a + 2**(L-1), a, ... (a stride of half the line-address space),
    mixed with random accesses from other PCs."""
    rng = np.random.default_rng(seed)
    trace = np.zeros(n, TRACE_DTYPE)
    half = 1 << (line_bits - 1)
    lines = (np.arange(n) % 2) * half + (np.arange(n) // 64) % half
    trace["addr"] = lines.astype(np.uint64) * np.uint64(line_bytes)
    trace["pc"] = 0x400000
    other = rng.random(n) < 0.2
    trace["addr"][other] = rng.integers(0, (1 << line_bits) * line_bytes, other.sum())
    trace["pc"][other] = 0x400100 + rng.integers(0, 4, other.sum()) * 4
    trace["write"] = rng.random(n) < 0.3
    return trace


SMALL_SPACES = [  # (sets, ways, line_bytes, addr_bits, prefetcher kind); L = line-address bits
    (1, 1, 128, 8, "nextline"),    # L = 1: line + 1 and line + 3 are one line
    (4, 2, 16, 20, "stride"),      # L = 16: a stride of 0x8000 proposes each line twice
    (2, 2, 64, 10, "table"),       # L = 4: a delta of 8 likewise
]


@pytest.mark.parametrize(("sets", "ways", "line_bytes", "addr_bits", "kind"), SMALL_SPACES,
                         ids=[f"{k}-L{a - (b.bit_length() - 1)}"
                              for _, _, b, a, k in SMALL_SPACES])
def test_rtl_matches_model_when_prefetch_candidates_coincide(sets, ways, line_bytes, addr_bits,
                                                             kind, tmp_path):
    """In a small line-address space, candidates k and k+2 of one proposal can be one line:
    the model queues it once, the RTL queued it twice (more requests and fills)."""
    seed = SEED + 100 + SMALL_SPACES.index((sets, ways, line_bytes, addr_bits, kind))
    print(f"seed={seed} kind={kind}")
    line_bits = addr_bits - (line_bytes.bit_length() - 1)
    table = None
    if kind == "table":
        table = tmp_path / "delta.npz"
        save_table(table, make_table(kind="prefetch", entry_bits=5, history=0,
                                     values=np.full(4, 1 << (line_bits - 1)),
                                     confidence=np.full(4, 3)))
    config = CacheConfig(sets=sets, ways=ways, line_bytes=line_bytes, addr_bits=addr_bits)
    pf = PrefetcherConfig(kind=kind, degree=4, latency=2, queue=8, entries=1, table=table)
    trace = _small_space_trace(20_000, seed, line_bytes=line_bytes, line_bits=line_bits)
    model, _, diff = check(config, trace, prefetch=pf, gaps=gaps(20_000, seed=seed))
    assert diff is None, f"seed={seed}: {diff}"
    assert model.prefetch_requests > 0 and model.prefetch_issued > 0


@pytest.mark.parametrize(("chunk", "n"), [(1000, 5_000), (1, 300)])
def test_player_chunks_of_any_legal_size(chunk, n, tmp_path):
    """run_player takes chunk 1..65536: a chunk that is not a power of two indexed its trace,
    PC and result memories with one bit too few (chunk 1000 replayed accesses 512.. over
    0..; accesses differed from the model), and chunk 1 was Verilog that did not build."""
    print(f"seed={SEED} chunk={chunk}")
    trace = adversarial(n, seed=SEED, sets=16, line_bytes=16)
    config = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy="lru")
    rtl = run_player(config, trace, chunk=chunk, gaps=gaps(n, seed=SEED), workdir=tmp_path)
    assert compare(simulate(config, trace), rtl.result) is None


def test_rtl_table_prefetcher_with_fewer_line_bits_than_index_bits(tmp_path):
    """The delta history is hashed as L-bit deltas rotated within the n index bits; with
    L < n the rotation sliced past the delta's width and kept it unrotated (the model rotates
    the zero-extended delta): other table entries, other prefetches."""
    seed = SEED + 200
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    table = tmp_path / "delta.npz"
    save_table(table, make_table(kind="prefetch", entry_bits=4, history=3,
                                 values=rng.integers(-4, 5, 1024),
                                 confidence=rng.integers(0, 4, 1024)))
    config = CacheConfig(sets=2, ways=2, line_bytes=64, addr_bits=10)  # L = 4 < n = 10
    pf = PrefetcherConfig(kind="table", degree=2, latency=2, queue=4, table=table)
    n = 20_000
    trace = np.zeros(n, TRACE_DTYPE)
    trace["addr"] = rng.integers(0, 1024, n)
    trace["pc"] = 0x400000 + rng.integers(0, 8, n) * 4
    trace["write"] = rng.random(n) < 0.3
    model, _, diff = check(config, trace, prefetch=pf, gaps=gaps(n, seed=seed))
    assert diff is None, f"seed={seed}: {diff}"
    assert model.prefetch_issued > 0


def test_rtl_prefetch_ready_times_survive_the_demand_clock_wrapping(tmp_path, monkeypatch):
    """The prefetcher's demand clock wraps (after 2**32 demand accesses; narrowed to 8 bits
    here); a request pushed just before the wrap has a ready time that wrapped to a small value,
    and `ready <= now` filled it at once: other victims from access 258 on."""
    import hwloop.hdl.cache.prefetcher as prefetcher

    monkeypatch.setattr(prefetcher, "TIME_BITS", 8)
    n = 2_000
    trace = np.zeros(n, TRACE_DTYPE)
    trace["addr"] = np.arange(n) * 64 * 3  # a scan of misses; each proposes lines +1 and +2
    trace["pc"] = 0x400000
    config = CacheConfig(sets=16, ways=2, line_bytes=64, addr_bits=32)
    for latency in (20, 127):  # a ready time up to half the clock's range ahead
        pf = PrefetcherConfig(kind="nextline", degree=2, latency=latency, queue=16)
        model, _, diff = check(config, trace, prefetch=pf, workdir=tmp_path / str(latency))
        assert diff is None, f"latency={latency}: {diff}"
        assert model.prefetch_issued > 0 and model.evictions > 0


@pytest.mark.parametrize("mode", ["player", "direct"])
def test_rtl_counters_past_their_wrap_add_up_exactly(tmp_path, monkeypatch, mode):
    """The RTL's event counters wrap at 2**32 (narrowed to 8 bits here): a trace with more hits
    than that gave the model's count modulo 2**32 and failed the comparison. The player reads
    them after every chunk, fewer accesses than a counter's range, and adds up the steps."""
    import hwloop.hdl.cache.cache as cache
    import hwloop.hdl.cache.prefetcher as prefetcher

    monkeypatch.setattr(cache, "COUNTER_BITS", 8)
    monkeypatch.setattr(prefetcher, "COUNTER_BITS", 8)
    n = 3_000
    trace = adversarial(n, seed=SEED, sets=16, line_bytes=16)
    config = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy="lru")
    pf = PrefetcherConfig(kind="nextline", degree=2, latency=3, queue=4)
    model = simulate(config, trace, prefetcher=pf)
    rtl = run_player(config, trace, prefetch=pf, workdir=tmp_path, mode=mode, chunk=100)
    assert model.hits > 256 and model.misses > 256 and model.prefetch_issued > 256
    assert compare(model, rtl.result) is None, f"seed={SEED}"


@pytest.mark.parametrize(("gap", "message"), [
    (np.zeros(99, np.uint8), "gaps must hold one value per access (100), not shape (99,)"),
    (np.full(100, 16), "gaps must be integers in 0..15 (idle cycles before an access)"),
    (np.full(100, -1), "gaps must be integers in 0..15 (idle cycles before an access)"),
    (np.full(100, 1.5), "gaps must be integers in 0..15 (idle cycles before an access)"),
])
def test_player_gaps_are_checked(gap, message):
    """A gap of 16 was 0 to the harness (its low 4 bits), -1 was 15, and a gap array of
    another length failed in the simulator as "produced no result"; each is now one line,
    before anything is built."""
    trace = adversarial(100, seed=SEED, sets=16, line_bytes=16)
    config = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy="lru")
    with pytest.raises(ParameterError) as info:
        run_player(config, trace, gaps=gap)
    assert str(info.value) == message

