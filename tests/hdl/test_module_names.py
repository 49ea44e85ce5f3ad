"""Two generated designs share a module name only if they share their Verilog: a flow (or a
FuseSoC cores root) holding both would otherwise get two different modules of one name."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from hwloop.hdl.cache.generate import cache_design, prefetcher_design
from hwloop.hdl.cache.params import PREFETCHER_LINE_BITS, CacheConfig
from hwloop.hdl.cache.prefetcher import PrefetcherConfig
from hwloop.hdl.systolic import generate_verilog
from hwloop.hdl.systolic.params import SystolicParams


def _body(verilog: str, name: str) -> str:
    """The Verilog with its top's name (which prefixes every submodule's) taken out."""
    return verilog.replace(name, "TOP")


def _variants(base, others: dict[str, object]) -> list:
    """``base`` and, per field, ``base`` with that field changed; every field must be listed
    in ``others`` (a new parameter is checked here or said not to change the Verilog)."""
    fields = {f.name for f in dataclasses.fields(base)}
    assert set(others) == fields, f"fields to vary: {sorted(fields ^ set(others))}"
    return [base] + [dataclasses.replace(base, **{field: value})
                     for field, value in others.items() if value is not None]


def _check(designs: list[tuple[str, str]]) -> None:
    for (name_a, body_a), (name_b, body_b) in itertools.combinations(designs, 2):
        assert (name_a == name_b) == (body_a == body_b), (name_a, name_b)


def test_systolic_names_differ_where_the_verilog_does():
    base = SystolicParams(rows=2, cols=2)
    variants = _variants(base, {
        "rows": 3, "cols": 3, "dataflow": "ws", "in_bits": 4, "acc_bits": 24, "ifmap_kib": 32,
        "weight_kib": 32, "acc_kib": 32, "bus_bytes": 8, "mem_latency": 5, "out_bits": 8,
        "read_ahead": True})
    designs = [(p.name, _body(generate_verilog(p), p.name)) for p in variants]
    _check(designs)
    names = [name for name, _ in designs]
    assert names[0] == "systolic_2x2_os_i8a32"  # the defaults add nothing
    assert "systolic_2x2_os_i8a32_s32_64_64" in names and "systolic_2x2_os_i8a32_bus8" in names
    # the memory latency is the harness's: same accelerator, same name
    assert names.count("systolic_2x2_os_i8a32") == 2


@pytest.mark.parametrize("policy", ["random", "lru"])
def test_cache_names_differ_where_the_verilog_does(policy):
    base = CacheConfig(sets=16, ways=4, line_bytes=64, policy=policy)
    variants = _variants(base, {"sets": 32, "ways": 2, "line_bytes": 32, "addr_bits": 32,
                                "policy": "srrip" if policy == "lru" else "lru", "seed": 7,
                                "table": None})  # a table's hash: test_cache_gen
    designs = [(d.name, _body(d.verilog, d.name)) for d in map(cache_design, variants)]
    _check(designs)
    assert designs[0][0] == f"cache_16s4w64b_{policy}"


def test_prefetcher_names_differ_where_the_verilog_does():
    base = PrefetcherConfig(kind="stride")
    variants = _variants(base, {"kind": "nextline", "degree": 2, "latency": 2, "queue": 4,
                                "entries": 128, "table": None})
    designs = []
    for config in variants:
        for line_bits in (PREFETCHER_LINE_BITS, 30):
            design = prefetcher_design(config, line_bits=line_bits)
            designs.append((design.name, _body(design.verilog, design.name)))
        # and as a cache's prefetcher
        design = cache_design(CacheConfig(sets=16, ways=4, line_bytes=64), prefetch=config)
        designs.append((design.name, _body(design.verilog, design.name)))
    _check(designs)
    assert designs[0][0] == "prefetcher_stride" and designs[1][0] == "prefetcher_stride_lb30"
