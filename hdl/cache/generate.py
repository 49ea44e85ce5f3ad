"""Emit Verilog for a cache (optionally with a prefetcher) or a prefetcher alone."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog

from hwloop.errors import ConfigError
from hwloop.toolchain import yosys_command

from .cache import Cache
from .params import PREFETCHER_LINE_BITS, CacheConfig
from .prefetcher import Prefetcher, PrefetcherConfig
from .table import Table, load_table


def _use_yowasp() -> None:
    # Amaranth runs "yosys" from PATH or $YOSYS; ours is YoWASP's from PyPI.
    os.environ.setdefault("YOSYS", yosys_command()[0])


def load_tables(config: CacheConfig | None,
                prefetch: PrefetcherConfig | None) -> tuple[Table | None, Table | None]:
    """The replacement and prefetch tables named by the configs (validated, or ConfigError)."""
    rtable = ptable = None
    if config is not None and config.policy == "table":
        rtable = load_table(config.table, kind="replacement")  # type: ignore[arg-type]
    if prefetch is not None and prefetch.kind == "table":
        ptable = load_table(prefetch.table, kind="prefetch")  # type: ignore[arg-type]
    return rtable, ptable


def table_sha256(path: str | Path) -> str:
    """The SHA-256 (hex) of a table file: its contents become part of the design."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError as exc:
        raise ConfigError.at(Path(path), None, "no such table file") from exc
    except OSError as exc:
        raise ConfigError.at(Path(path), None, f"cannot read table file: {exc.strerror}") from exc


def table_hashes(config: CacheConfig | None,
                 prefetch: PrefetcherConfig | None = None) -> dict[str, dict[str, str]]:
    """Each table file of the design (``replacement``, ``prefetch``): its path and SHA-256."""
    files = {}
    if config is not None and config.policy == "table":
        files["replacement"] = config.table
    if prefetch is not None and prefetch.kind == "table":
        files["prefetch"] = prefetch.table
    return {kind: {"file": str(path), "sha256": table_sha256(path)}  # type: ignore[arg-type]
            for kind, path in files.items()}


def _suffix(kind: str, hashes: dict[str, dict[str, str]]) -> str:
    # 8 hex digits: two tables of one geometry make different Verilog, so different names
    return f"_{hashes[kind]['sha256'][:8]}" if kind in hashes else ""


def _cache_name(config: CacheConfig, prefetch: PrefetcherConfig | None,
                hashes: dict[str, dict[str, str]]) -> str:
    name = config.name + _suffix("replacement", hashes)
    return name if prefetch is None else f"{name}_{prefetch.tag}{_suffix('prefetch', hashes)}"


def design_name(config: CacheConfig, prefetch: PrefetcherConfig | None = None) -> str:
    """The module (and file) name of a cache: its config's name, then the prefetcher's kind
    (as ``prefetcher_<kind>`` names a prefetcher alone), so the two designs differ in name; a
    table (either) adds the first 8 hex digits of its file's SHA-256."""
    return _cache_name(config, prefetch, table_hashes(config, prefetch))


def _prefetcher_name(prefetch: PrefetcherConfig, line_bits: int,
                     hashes: dict[str, dict[str, str]]) -> str:
    # a prefetcher alone; its line address width where not the default; a table adds its
    # file's hash, as in a cache
    width = "" if line_bits == PREFETCHER_LINE_BITS else f"_lb{line_bits}"
    return f"prefetcher_{prefetch.tag}{width}{_suffix('prefetch', hashes)}"


@dataclass(frozen=True)
class Design:
    """A generated top: its module name, Verilog, ports (``component_ports``) and the table
    files it was made from (``table_hashes``)."""

    name: str
    verilog: str
    ports: list[dict]
    tables: dict[str, dict[str, str]]


def _cache_top(config: CacheConfig, prefetch: PrefetcherConfig | None) -> Cache:
    rtable, ptable = load_tables(config, prefetch)
    return Cache(config=config, table=rtable, prefetch=prefetch, prefetch_table=ptable)


def _prefetcher_top(prefetch: PrefetcherConfig, line_bits: int) -> Prefetcher:
    _, ptable = load_tables(None, prefetch)
    return Prefetcher(config=prefetch, line_bits=line_bits, table=ptable)


def _convert(top, name: str) -> str:
    _use_yowasp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return verilog.convert(top, name=name, emit_src=False)


def _design(top, name: str, tables: dict[str, dict[str, str]]) -> Design:
    from hwloop.manifest import component_ports

    return Design(name=name, verilog=_convert(top, name), ports=component_ports(top),
                  tables=tables)


def cache_design(config: CacheConfig, *, prefetch: PrefetcherConfig | None = None) -> Design:
    """A cache (optionally with a prefetcher) for ``hwloop generate cache``: its tables loaded
    (a bad one is named before its file is hashed) and hashed once."""
    top = _cache_top(config, prefetch)
    tables = table_hashes(config, prefetch)
    return _design(top, _cache_name(config, prefetch, tables), tables)


def prefetcher_design(prefetch: PrefetcherConfig, *, line_bits: int) -> Design:
    """A prefetcher alone for ``hwloop generate prefetcher``, as :func:`cache_design`."""
    top = _prefetcher_top(prefetch, line_bits)
    tables = table_hashes(None, prefetch)
    return _design(top, _prefetcher_name(prefetch, line_bits, tables), tables)


def cache_verilog(config: CacheConfig, *, prefetch: PrefetcherConfig | None = None,
                  name: str | None = None) -> str:
    """The cache's Verilog; ``name`` (the trace player's) saves hashing its tables."""
    top = _cache_top(config, prefetch)
    return _convert(top, name or design_name(config, prefetch))


def prefetcher_verilog(prefetch: PrefetcherConfig, *, line_bits: int,
                       name: str | None = None) -> str:
    top = _prefetcher_top(prefetch, line_bits)
    return _convert(top, name or _prefetcher_name(prefetch, line_bits,
                                                    table_hashes(None, prefetch)))
