"""The cache and prefetcher generators emit Verilog with the documented interface."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.hdl import Fragment

from hwloop.errors import ParameterError
from hwloop.hdl.cache.cache import Cache
from hwloop.hdl.cache.generate import cache_verilog, prefetcher_verilog
from hwloop.hdl.cache.params import CacheConfig
from hwloop.hdl.cache.prefetcher import PrefetcherConfig
from hwloop.hdl.cache.table import make_table, save_table

# Cache objects built only to inspect them are never elaborated: that is the point
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

PORTS = ("req_valid", "req_ready", "req_addr", "req_pc", "req_write", "resp_valid", "resp_hit",
         "resp_way", "resp_evict", "resp_writeback", "hits", "misses", "evictions",
         "writebacks")


def _ports(verilog: str) -> dict[str, str]:
    return {name: kind for kind, name in
            re.findall(r"^\s*(input|output)\s*(?:\[[^\]]+\]\s*)?(\w+);", verilog, re.M)}


@pytest.mark.parametrize("policy", ["lru", "plru", "srrip", "random", "table"])
def test_every_policy_generates(policy, tmp_path):
    table = None
    if policy == "table":
        table = tmp_path / "t.npz"
        save_table(table, make_table(kind="replacement", entry_bits=5, history=1,
                                     values=np.arange(64) % 32))
    config = CacheConfig(sets=8, ways=4, line_bytes=32, addr_bits=32, policy=policy,
                         table=table)
    verilog = cache_verilog(config)
    ports = _ports(verilog)
    assert f"module {config.name}" in verilog
    for name in PORTS:
        assert name in ports, name
    assert ports["req_addr"] == "input" and ports["resp_hit"] == "output"
    assert "pf_useful" not in ports


def test_set_word_layout():
    cache = Cache(config=CacheConfig(sets=8, ways=4, line_bytes=32, addr_bits=32, policy="lru"))
    Fragment.get(cache, None)  # elaborated: an unused Cache warns when it is collected
    # per way: valid, dirty, prefetched, 24-bit tag, 2-bit LRU age
    assert cache.way_word == 3 + 24 + 2
    assert cache.set_word == 4 * 29
    ages = [(cache.initial_set() >> (w * 29 + 27)) & 3 for w in range(4)]
    assert ages == [0, 1, 2, 3]


def test_prefetch_ports_and_prefetcher_alone():
    config = CacheConfig(sets=8, ways=2, line_bytes=32, addr_bits=32)
    verilog = cache_verilog(config, prefetch=PrefetcherConfig(kind="nextline"))
    # not the name without a prefetcher; the address width differs from the default
    assert "module cache_8s2w32b_lru_a32_nextline(" in verilog
    ports = _ports(verilog)
    assert {"pf_requests", "pf_issued", "pf_useful", "pf_late", "pf_evicted_unused",
            "pf_dropped"} <= set(ports)
    verilog = prefetcher_verilog(PrefetcherConfig(kind="stride", entries=16), line_bits=27)
    assert "module prefetcher_stride_e16_lb27(" in verilog and "fill_line" in verilog


@pytest.mark.parametrize("policy", ["srrip", "table"])
def test_verilog_grows_linearly_with_the_ways(policy, tmp_path):
    """The victim of srrip and table takes the largest RRPV over the ways; its expression named
    the running maximum twice per way, so the Verilog doubled with every way (16 ways: 5 MB
    in 14 s, 64 ways never finished). 1..64 ways are legal."""
    table = None
    if policy == "table":
        table = tmp_path / "t.npz"
        save_table(table, make_table(kind="replacement", entry_bits=5, history=1,
                                     values=np.arange(64) % 32))

    def size(ways: int) -> int:
        return len(cache_verilog(CacheConfig(sets=2, ways=ways, line_bytes=8, addr_bits=20,
                                             policy=policy, table=table)))

    small, large = size(8), size(16)
    assert large < 3 * small, (small, large)
    assert size(64) < 20 * small


def test_opt_has_no_rtl():
    with pytest.raises(ParameterError) as info:
        Cache(config=CacheConfig(sets=8, ways=2, line_bytes=32, policy="opt"))
    assert str(info.value) == ("policy 'opt' exists only in the model "
                               "(RTL has lru, plru, srrip, random, table)")


@pytest.mark.parametrize(("values", "message"), [
    (dict(kind="markov"), "unknown prefetcher 'markov' (have nextline, stride, table)"),
    (dict(kind="stride", degree=5), "degree must be an integer in 1..4, not 5"),
    (dict(kind="stride", latency=0), "latency must be an integer in 1..255, not 0"),
    (dict(kind="stride", entries=100), "entries must be a power of two in 1..65536, not 100"),
    (dict(kind="table"), "prefetcher 'table' needs a table file (--prefetch-table FILE)"),
])
def test_prefetcher_config_errors(values, message):
    with pytest.raises(ParameterError) as info:
        PrefetcherConfig(**values)
    assert str(info.value) == message


@pytest.mark.parametrize("meta, message", [
    ({"entries": "4"}, "meta 'entries' must be an integer, not '4'"),
    ({"entries": None}, "meta 'entries' must be an integer, not None"),
    ({"entries": True}, "meta 'entries' must be an integer, not True"),
    ({"entry_bits": 3.0}, "meta 'entry_bits' must be an integer, not 3.0"),
    ({"entries": 8}, "meta says 8 entries but values has shape (4,)"),
])
def test_table_meta_of_the_wrong_type_is_named(tmp_path, meta, message):
    import json

    from hwloop.errors import ConfigError
    from hwloop.hdl.cache.table import load_table

    path = tmp_path / "t.npz"
    save_table(path, make_table(kind="replacement", entry_bits=3, history=0,
                                values=np.zeros(4, np.int64)))
    with np.load(path) as archive:
        arrays = dict(archive)
    good = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps({**good, **meta}))
    np.savez(path, **arrays)
    with pytest.raises(ConfigError) as info:
        load_table(path, kind="replacement")
    assert str(info.value) == f"{path}: {message}"
    for name in ("entries", "history"):  # and a meta without one
        arrays["meta"] = np.array(json.dumps({k: v for k, v in good.items() if k != name}))
        np.savez(path, **arrays)
        with pytest.raises(ConfigError) as info:
            load_table(path, kind="replacement")
        assert str(info.value) == f"{path}: meta has no {name!r}"


def test_a_table_on_a_pipe_is_refused_as_such(tmp_path):
    """--table <(...) was 'not a readable table file (File is not a zip file)': the first
    bytes were read from one open of the pipe and the zip reader found it drained (and a
    table is loaded more than once: checked, then simulated)."""
    import os
    import threading

    from hwloop.errors import ConfigError
    from hwloop.hdl.cache.table import load_table

    path = tmp_path / "t.npz"
    save_table(path, make_table(kind="replacement", entry_bits=3, history=1,
                                values=np.arange(8, dtype=np.int64) % 8))
    read, write = os.pipe()
    data = path.read_bytes()
    threading.Thread(target=lambda: (os.write(write, data), os.close(write)),
                     daemon=True).start()
    try:
        with pytest.raises(ConfigError) as info:
            load_table(f"/dev/fd/{read}", kind="replacement")
    finally:
        os.close(read)
    assert str(info.value) == (f"/dev/fd/{read}: is not a regular file (a pipe?); name the "
                               f"table file itself")
