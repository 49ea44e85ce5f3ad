"""The golden model against simple pure-Python references, and its input validation."""

from __future__ import annotations

import numpy as np
import pytest

from hwloop.errors import ConfigError, ParameterError
from hwloop.hdl.cache.params import CacheConfig
from hwloop.hdl.cache.prefetcher import PrefetcherConfig
from hwloop.hdl.cache.table import load_table, make_table, save_table, table_index
from hwloop.sim.cache.model import next_use, simulate

from .test_cache_support import TRACE_DTYPE, adversarial

SEED = 424242


def _trace(n: int, seed: int, span: int, *, line: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.zeros(n, TRACE_DTYPE)
    # skewed reuse so both hits and misses are common
    t["addr"] = (rng.zipf(1.3, n) % span) * line + rng.integers(0, line, n)
    t["pc"] = 0x400000 + rng.integers(0, 8, n) * 4
    t["write"] = rng.random(n) < 0.3
    return t


def _reference(config: CacheConfig, trace: np.ndarray, *, opt: bool):
    """Textbook LRU (recency list) / Belady (scan the future), invalid ways filled lowest first."""
    lines = [int(a) >> config.offset_bits for a in trace["addr"]]
    ways = config.ways
    tags = [[None] * ways for _ in range(config.sets)]
    order = [list(range(ways)) for _ in range(config.sets)]  # most recent first
    hits, victims = [], []
    for i, line in enumerate(lines):
        s, tag = line % config.sets, line // config.sets
        if tag in tags[s]:
            w = tags[s].index(tag)
            hits.append(True)
            victims.append(-1)
        else:
            hits.append(False)
            if None in tags[s]:
                w = tags[s].index(None)
                victims.append(-1)
            elif opt:
                def distance(way: int, s=s, i=i) -> float:
                    line_w = tags[s][way] * config.sets + s
                    for j in range(i + 1, len(lines)):
                        if lines[j] == line_w:
                            return j
                    return float("inf")
                far = [distance(way) for way in range(ways)]
                w = far.index(max(far))
                victims.append(w)
            else:
                w = order[s][-1]
                victims.append(w)
            tags[s][w] = tag
        order[s].remove(w)
        order[s].insert(0, w)
    return np.array(hits), np.array(victims)


@pytest.mark.parametrize("ways", [1, 2, 4, 6])
def test_lru_matches_reference(ways):
    print(f"seed={SEED + ways}")
    config = CacheConfig(sets=8, ways=ways, line_bytes=16, policy="lru")
    trace = _trace(20_000, SEED + ways, 200)
    hits, victims = _reference(config, trace, opt=False)
    result = simulate(config, trace)
    assert 0 < result.hits < trace.size
    np.testing.assert_array_equal(result.hit, hits)
    np.testing.assert_array_equal(result.victim, victims)


@pytest.mark.parametrize("ways", [2, 4])
def test_opt_matches_reference(ways):
    print(f"seed={SEED + 10 + ways}")
    config = CacheConfig(sets=4, ways=ways, line_bytes=16, policy="opt")
    trace = _trace(3_000, SEED + 10 + ways, 60)
    hits, victims = _reference(config, trace, opt=True)
    result = simulate(config, trace)
    np.testing.assert_array_equal(result.hit, hits)
    np.testing.assert_array_equal(result.victim, victims)


def test_opt_is_an_upper_bound_of_the_other_policies():
    trace = adversarial(50_000, seed=SEED, sets=16, line_bytes=16)
    rates = {p: simulate(CacheConfig(sets=16, ways=4, line_bytes=16, policy=p), trace).hit_rate
             for p in ("lru", "plru", "srrip", "random", "opt")}
    assert all(rates["opt"] >= r for r in rates.values())
    assert rates["opt"] > rates["lru"]


def test_counters_add_up():
    trace = adversarial(30_000, seed=SEED + 1, sets=16, line_bytes=16)
    r = simulate(CacheConfig(sets=16, ways=4, line_bytes=16, policy="srrip"), trace)
    assert r.hits + r.misses == r.accesses == trace.size
    assert r.hits == int(r.hit.sum())
    assert r.evictions == int((r.victim >= 0).sum()) <= r.misses
    assert r.writebacks == int(r.writeback.sum()) <= r.evictions


def test_any_nonzero_write_flag_is_a_write():
    """As in .trace files: the model cast the flag to u8, so a u2 flag of 256 was a read."""
    wide = np.dtype([("pc", "<u8"), ("addr", "<u8"), ("write", "<u2")])
    t = np.zeros(3, wide)
    t["addr"] = [0, 64, 128]  # one set of 2 ways: the third line evicts the first
    t["write"] = [256, 0, 0]
    r = simulate(CacheConfig(sets=1, ways=2, line_bytes=64, addr_bits=32), t)
    assert r.writeback.tolist() == [False, False, True] and r.writebacks == 1


def test_random_policy_depends_on_the_seed():
    trace = adversarial(20_000, seed=SEED + 2, sets=16, line_bytes=16)
    a = simulate(CacheConfig(sets=16, ways=4, line_bytes=16, policy="random", seed=1), trace)
    b = simulate(CacheConfig(sets=16, ways=4, line_bytes=16, policy="random", seed=2), trace)
    c = simulate(CacheConfig(sets=16, ways=4, line_bytes=16, policy="random", seed=1), trace)
    assert not np.array_equal(a.victim, b.victim)
    np.testing.assert_array_equal(a.victim, c.victim)


def test_next_use():
    np.testing.assert_array_equal(next_use(np.array([5, 6, 5, 7, 6, 5])),
                                  [2, 4, 5, -1 & np.iinfo(np.int64).max,
                                   np.iinfo(np.int64).max, np.iinfo(np.int64).max])


def test_nextline_prefetcher_covers_a_scan():
    n = 20_000
    t = np.zeros(n, TRACE_DTYPE)
    t["addr"] = np.arange(n) * 16
    config = CacheConfig(sets=16, ways=4, line_bytes=16)
    base = simulate(config, t)
    r = simulate(config, t, prefetcher=PrefetcherConfig(kind="nextline", degree=2, latency=1))
    assert base.misses == n
    assert r.misses < n // 10
    assert r.prefetch_useful > 0.9 * n and r.prefetch_issued >= r.prefetch_useful


def test_stride_prefetcher_learns_per_pc_strides():
    n = 20_000
    t = np.zeros(n, TRACE_DTYPE)
    t["pc"] = 0x400000 + (np.arange(n) % 2) * 4
    t["addr"] = np.where(np.arange(n) % 2 == 0, np.arange(n) * 64, (1 << 24) - np.arange(n) * 48)
    config = CacheConfig(sets=16, ways=4, line_bytes=16)
    base = simulate(config, t)
    r = simulate(config, t, prefetcher=PrefetcherConfig(kind="stride", degree=4, latency=2))
    assert r.misses < base.misses // 4
    assert r.prefetch_late >= 0 and r.prefetch_useful > 0


@pytest.mark.parametrize(("values", "message"), [
    (dict(sets=48, ways=4, line_bytes=64), "sets must be a power of two, not 48"),
    (dict(sets=64, ways=0, line_bytes=64), "ways must be an integer in 1..64, not 0"),
    (dict(sets=64, ways=4, line_bytes=24), "line_bytes must be a power of two, not 24"),
    (dict(sets=64, ways=4, line_bytes=64, policy="mru"),
     "unknown policy 'mru' (have lru, plru, srrip, random, table, opt)"),
    (dict(sets=64, ways=6, line_bytes=64, policy="plru"),
     "plru needs ways to be a power of two, not 6"),
    (dict(sets=64, ways=4, line_bytes=64, policy="table"),
     "policy 'table' needs a table file (--table FILE)"),
    (dict(sets=64, ways=4, line_bytes=64, seed=0), "seed must be an integer in 1..65535, not 0"),
])
def test_config_errors(values, message):
    with pytest.raises(ParameterError) as info:
        CacheConfig(**values)
    assert str(info.value) == message


def test_table_roundtrip_and_index(tmp_path):
    rng = np.random.default_rng(SEED)
    table = make_table(kind="replacement", entry_bits=5, history=1,
                       values=rng.integers(0, 32, 64))
    save_table(tmp_path / "t.npz", table)
    back = load_table(tmp_path / "t.npz", kind="replacement")
    np.testing.assert_array_equal(back.values, table.values)
    assert (back.entries, back.entry_bits, back.history) == (64, 5, 1)
    # fold of pc>>2 in 6-bit chunks, XOR rotl(fold(previous pc), 1)
    assert table_index(back, [0x4, 0x0]) == 1
    assert table_index(back, [0x0, 0x4]) == 2


def test_table_for_another_geometry_is_rejected(tmp_path):
    path = tmp_path / "t.npz"
    save_table(path, make_table(kind="replacement", entry_bits=5, history=0,
                                values=np.zeros(1024, np.int64)))
    with pytest.raises(ConfigError) as info:
        load_table(path, kind="replacement", entries=2048)
    assert str(info.value) == (f"{path}: replacement table of 1024 entries x 5 bits, history 0; "
                               "this design needs entries=2048")
    with pytest.raises(ConfigError) as info:
        load_table(path, kind="prefetch")
    assert str(info.value) == f"{path}: is a replacement table, need a prefetch table"


def test_corrupt_table_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConfigError) as info:
        load_table(bad, kind="replacement")
    # not numpy's advice to unpickle it
    assert str(info.value) == f"{bad}: not a table file (not an .npz archive)"
    np.savez(tmp_path / "wrong.npz", values=np.zeros(4))
    with pytest.raises(ConfigError, match="not an hwloop table"):
        load_table(tmp_path / "wrong.npz", kind="replacement")
    with pytest.raises(ConfigError, match="no such table file"):
        load_table(tmp_path / "missing.npz", kind="replacement")


@pytest.mark.parametrize(("offset", "value", "problem"), [
    (8, 1, "is encrypted"),                           # general-purpose flags: encrypted
    (10, 99, "compression method is not supported"),  # compression method
    (6, 255, "zip file version"),                     # version needed to extract
])
def test_damaged_zip_headers_are_one_line_errors(tmp_path, offset, value, problem):
    """zipfile raises RuntimeError or NotImplementedError for these, which were not caught:
    a traceback instead of a one-line error naming the file."""
    path = tmp_path / "t.npz"
    save_table(path, make_table(kind="replacement", entry_bits=3, history=0,
                                values=np.zeros(4, np.int64)))
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")  # the first member's central directory entry
    data[central + offset] = value
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError) as info:
        load_table(path, kind="replacement")
    assert str(info.value).startswith(f"{path}: not a readable table file (")
    assert problem in str(info.value)


def test_confidence_is_checked_like_values(tmp_path):
    """A float or 2-D confidence array was converted (2.9 -> 2) or flattened silently, and
    unsigned values above 2**63 wrapped to negative deltas."""
    import json

    meta = np.array(json.dumps({"format": "hwloop-table", "version": 1, "kind": "prefetch",
                                "entries": 4, "entry_bits": 5, "history": 0}))
    path = tmp_path / "t.npz"
    np.savez(path, meta=meta, values=np.ones(4, np.int64), confidence=np.full(4, 2.9))
    with pytest.raises(ConfigError) as info:
        load_table(path, kind="prefetch")
    assert str(info.value) == f"{path}: confidence must be integers, not float64"
    np.savez(path, meta=meta, values=np.ones(4, np.int64), confidence=np.ones((2, 2), np.int64))
    with pytest.raises(ConfigError) as info:
        load_table(path, kind="prefetch")
    assert str(info.value) == f"{path}: meta says 4 entries but confidence has shape (2, 2)"
    np.savez(path, meta=meta, values=np.full(4, 2**64 - 1, np.uint64),
             confidence=np.ones(4, np.int64))  # as int64: -1, a legal delta
    with pytest.raises(ConfigError) as info:
        load_table(path, kind="prefetch")
    assert str(info.value) == f"{path}: values has {2**64 - 1}, out of range"


def test_oversized_table_arrays_are_rejected_before_loading(tmp_path, monkeypatch):
    """A small .npz can unpack to gigabytes (2^26 zeros compress to ~500 KB): its member sizes
    and .npy headers are checked before anything is unpacked."""
    meta = np.array('{"format": "hwloop-table", "version": 1, "kind": "replacement", '
                    '"entries": 1024, "entry_bits": 5, "history": 0}')
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, meta=meta, values=np.zeros(1 << 20, np.int64))
    loaded = []
    monkeypatch.setattr(np, "load", lambda *a, **k: loaded.append(a))
    with pytest.raises(ConfigError) as info:
        load_table(bomb, kind="replacement")
    assert str(info.value) == (f"{bomb}: 'values' unpacks to {(1 << 23) + 128} bytes; "
                               "a table has at most 65536 entries")
    small = tmp_path / "small.npz"  # fits the byte limit, but too many entries
    np.savez_compressed(small, meta=meta, values=np.zeros(1 << 17, np.int8))
    with pytest.raises(ConfigError) as info:
        load_table(small, kind="replacement")
    assert str(info.value) == (f"{small}: 'values' has shape (131072,); "
                               "a table has at most 65536 entries")
    assert loaded == []


def test_opt_trained_table_protects_reused_lines_from_a_scan(tmp_path):
    """A PC that scans and a PC that reuses a working set: the OPT-trained table marks the
    scan averse and the table policy keeps the working set, where LRU thrashes."""
    from hwloop.sim.cache.opt_table import opt_table, table_indices

    n = 40_000
    t = np.zeros(n, TRACE_DTYPE)
    i = np.arange(n)
    hot = (i // 2) % 48  # 48 lines = 3 ways of 16 sets
    scan = (1 << 20) + i // 2  # never reused, spread over every set
    t["addr"] = np.where(i % 2 == 0, hot, scan) * 16
    t["pc"] = np.where(i % 2 == 0, 0x401000, 0x402000)
    config = CacheConfig(sets=16, ways=4, line_bytes=16)
    table = opt_table(config, t, entries=256, entry_bits=5, history=0)
    hot_index, scan_index = table_indices(np.array([0x401000, 0x402000], np.uint64),
                                          entries=256, history=0)
    assert table.values[scan_index] == 31 and table.values[hot_index] <= 3
    save_table(tmp_path / "opt.npz", table)
    lru = simulate(config, t)
    learned = simulate(CacheConfig(sets=16, ways=4, line_bytes=16, policy="table",
                                   table=tmp_path / "opt.npz"), t)
    assert lru.hit_rate < 0.05
    assert learned.hit_rate > 0.45  # every hot access after warm-up hits
