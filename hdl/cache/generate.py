"""Emit Verilog for a cache (optionally with a prefetcher) or a prefetcher alone."""

from __future__ import annotations

import os
import warnings

from amaranth.back import verilog

from hwloop.toolchain import yosys_command

from .cache import Cache
from .params import CacheConfig
from .prefetcher import Prefetcher, PrefetcherConfig
from .table import Table, load_table


def _use_yowasp() -> None:
    # Amaranth runs "yosys" from PATH or $YOSYS; ours is YoWASP's from PyPI.
    os.environ.setdefault("YOSYS", yosys_command()[0])


def load_tables(config: CacheConfig,
                prefetch: PrefetcherConfig | None) -> tuple[Table | None, Table | None]:
    """The replacement and prefetch tables named by the configs (validated, or ConfigError)."""
    rtable = ptable = None
    if config.policy == "table":
        rtable = load_table(config.table, kind="replacement")  # type: ignore[arg-type]
    if prefetch is not None and prefetch.kind == "table":
        ptable = load_table(prefetch.table, kind="prefetch")  # type: ignore[arg-type]
    return rtable, ptable


def design_name(config: CacheConfig, prefetch: PrefetcherConfig | None = None) -> str:
    """The module (and file) name of a cache: its config's name, then the prefetcher's kind
    (as ``prefetcher_<kind>`` names a prefetcher alone), so the two designs differ in name."""
    return config.name if prefetch is None else f"{config.name}_{prefetch.kind}"


def cache_ports(config: CacheConfig, *,
                prefetch: PrefetcherConfig | None = None) -> list[dict]:
    """The cache's top-level ports (``hwloop.manifest.component_ports``)."""
    from hwloop.manifest import component_ports

    rtable, ptable = load_tables(config, prefetch)
    return component_ports(Cache(config=config, table=rtable, prefetch=prefetch,
                                 prefetch_table=ptable))


def prefetcher_ports(prefetch: PrefetcherConfig, *, line_bits: int) -> list[dict]:
    """The prefetcher's top-level ports, as :func:`cache_ports`."""
    from hwloop.manifest import component_ports

    ptable = None
    if prefetch.kind == "table":
        ptable = load_table(prefetch.table, kind="prefetch")  # type: ignore[arg-type]
    return component_ports(Prefetcher(config=prefetch, line_bits=line_bits, table=ptable))


def cache_verilog(config: CacheConfig, *, prefetch: PrefetcherConfig | None = None,
                  name: str | None = None) -> str:
    rtable, ptable = load_tables(config, prefetch)
    _use_yowasp()
    top = Cache(config=config, table=rtable, prefetch=prefetch, prefetch_table=ptable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return verilog.convert(top, name=name or design_name(config, prefetch), emit_src=False)


def prefetcher_verilog(prefetch: PrefetcherConfig, *, line_bits: int,
                       name: str | None = None) -> str:
    ptable = None
    if prefetch.kind == "table":
        ptable = load_table(prefetch.table, kind="prefetch")  # type: ignore[arg-type]
    _use_yowasp()
    top = Prefetcher(config=prefetch, line_bits=line_bits, table=ptable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return verilog.convert(top, name=name or f"prefetcher_{prefetch.kind}", emit_src=False)
