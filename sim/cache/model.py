"""The golden model of hwloop's caches and prefetchers: the exact behaviour of the RTL.

``simulate(config, trace)`` replays a trace (a structured array with fields ``pc`` u8,
``addr`` u8, ``write`` u1) through the cache and returns its counters and the per-access
hit / way / victim log. The kernel is C (``cachemodel.c``), compiled with the system C compiler
at first use, cached through :mod:`hwloop.buildcache` and called with :mod:`ctypes`: millions
of accesses per second. ``policy="opt"`` is Belady's optimal replacement (model only).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwloop.buildcache import BuildCache, build_key
from hwloop.errors import ParameterError, ToolchainError
from hwloop.hdl.cache.params import POLICIES, CacheConfig
from hwloop.hdl.cache.prefetcher import PREFETCHERS, PrefetcherConfig
from hwloop.hdl.cache.table import Table, load_table

__all__ = ["CacheConfig", "PrefetcherConfig", "CacheResult", "simulate", "next_use",
           "POLICIES", "PREFETCHERS"]

TRACE_DTYPE = np.dtype([("pc", "<u8"), ("addr", "<u8"), ("write", "u1")])
_POLICY_CODE = {name: i for i, name in enumerate(POLICIES)}
_PREFETCH_CODE = {"nextline": 1, "stride": 2, "table": 3}
_COUNTERS = ("hits", "misses", "evictions", "writebacks", "prefetch_requests",
             "prefetch_issued", "prefetch_useful", "prefetch_late", "prefetch_evicted_unused",
             "prefetch_dropped")
_SOURCE = Path(__file__).with_name("cachemodel.c")
NEVER = np.iinfo(np.int64).max


@dataclass(kw_only=True, eq=False)
class CacheResult:
    """Counters and per-access log of one simulation.

    ``hit[i]``: access i hit; ``way[i]``: the way it hit or filled; ``victim[i]``: the way whose
    valid line it evicted, -1 if none; ``writeback[i]``: that line was dirty.
    """

    accesses: int
    hits: int
    misses: int
    evictions: int
    writebacks: int
    hit: np.ndarray
    way: np.ndarray
    victim: np.ndarray
    writeback: np.ndarray
    prefetch_requests: int = 0
    prefetch_issued: int = 0
    prefetch_useful: int = 0
    prefetch_late: int = 0
    prefetch_evicted_unused: int = 0
    prefetch_dropped: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.accesses if self.accesses else 0.0

    def counters(self) -> dict[str, int]:
        names = ("accesses",) + _COUNTERS
        return {name: int(getattr(self, name)) for name in names}


def _compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise ToolchainError("no C compiler found for the cache model (apt-get install gcc)")
    return cc


_CFLAGS = ("-O2", "-shared", "-fPIC", "-std=c99")


@functools.cache
def _library() -> ctypes.CDLL:
    cc = _compiler()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                 check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ToolchainError(f"`{cc} --version` failed: {exc}") from exc
    source = _SOURCE.read_text()
    key = build_key(sources={"cachemodel.c": source}, flags=_CFLAGS, tools={"cc": version},
                    extra={"what": "cachemodel"})

    def build(folder: Path) -> None:
        (folder / "cachemodel.c").write_text(source)
        proc = subprocess.run([cc, *_CFLAGS, "-o", str(folder / "libcachemodel.so"),
                               str(folder / "cachemodel.c")], capture_output=True, text=True)
        if proc.returncode:
            raise ToolchainError(f"compiling the cache model failed: {proc.stderr.strip()}")

    path, _ = BuildCache().get_or_build(key, build)
    lib = ctypes.CDLL(str(path / "libcachemodel.so"))
    ptr = ctypes.c_void_p
    lib.hwl_cache_run.argtypes = [ctypes.c_int64] + [ptr] * 13
    lib.hwl_cache_run.restype = ctypes.c_int
    return lib


def next_use(lines: np.ndarray) -> np.ndarray:
    """For each access, the index of the next access to the same line (NEVER if none)."""
    lines = np.asarray(lines)
    n = lines.size
    out = np.full(n, NEVER, dtype=np.int64)
    if n < 2:
        return out
    order = np.argsort(lines, kind="stable")
    same = lines[order[1:]] == lines[order[:-1]]
    out[order[:-1][same]] = order[1:][same]
    return out


def _as_trace(trace: np.ndarray) -> np.ndarray:
    names = trace.dtype.names or ()
    missing = [name for name in TRACE_DTYPE.names if name not in names]
    if missing:
        raise ParameterError(f"a trace needs fields pc, addr, write; missing {missing[0]}")
    return trace


def load_replacement_table(config: CacheConfig) -> Table | None:
    if config.policy != "table":
        return None
    return load_table(config.table, kind="replacement")  # type: ignore[arg-type]


def load_prefetch_table(prefetcher: PrefetcherConfig | None) -> Table | None:
    if prefetcher is None or prefetcher.kind != "table":
        return None
    return load_table(prefetcher.table, kind="prefetch")  # type: ignore[arg-type]


def simulate(config: CacheConfig, trace: np.ndarray, *,
             prefetcher: PrefetcherConfig | None = None) -> CacheResult:
    """Replay ``trace`` through the cache ``config`` (and ``prefetcher``); exact RTL behaviour."""
    trace = _as_trace(trace)
    if prefetcher is not None and config.policy == "opt":
        raise ParameterError("policy 'opt' cannot be combined with a prefetcher")
    n = int(trace.size)
    addr = np.ascontiguousarray(trace["addr"], dtype=np.uint64)
    pc = np.ascontiguousarray(trace["pc"], dtype=np.uint64)
    # nonzero = write, as in .trace files; a cast to u8 made a u2 flag of 256 a read
    write = np.ascontiguousarray(np.asarray(trace["write"]) != 0, dtype=np.uint8)
    rtable = load_replacement_table(config)
    ptable = load_prefetch_table(prefetcher)
    if config.policy == "opt":
        mask = np.uint64((1 << config.addr_bits) - 1) if config.addr_bits < 64 else ~np.uint64(0)
        nu = next_use((addr & mask) >> np.uint64(config.offset_bits))
    else:
        nu = np.zeros(1, dtype=np.int64)
    params = np.zeros(17, dtype=np.int64)
    params[:7] = (config.sets, config.ways, config.offset_bits, config.index_bits,
                  config.addr_bits, _POLICY_CODE[config.policy], config.seed)
    empty = np.zeros(1, dtype=np.int64)
    rvalues = empty
    if rtable is not None:
        params[7:10] = (rtable.index_bits, rtable.entry_bits, rtable.history)
        rvalues = np.ascontiguousarray(rtable.values, dtype=np.int64)
    pvalues, pconf = empty, empty
    if prefetcher is not None:
        params[10:14] = (_PREFETCH_CODE[prefetcher.kind], prefetcher.degree,
                         prefetcher.latency, prefetcher.queue)
        if ptable is not None:
            params[14] = ptable.index_bits
            params[15] = ptable.entry_bits
            params[16] = ptable.history
            pvalues = np.ascontiguousarray(ptable.values, dtype=np.int64)
            pconf = np.ascontiguousarray(ptable.confidence, dtype=np.int64)
        else:
            params[14] = prefetcher.entries.bit_length() - 1
    hit = np.zeros(n, dtype=np.uint8)
    way = np.zeros(n, dtype=np.int8)
    evict = np.zeros(n, dtype=np.uint8)
    wb = np.zeros(n, dtype=np.uint8)
    counters = np.zeros(len(_COUNTERS), dtype=np.uint64)
    rc = _library().hwl_cache_run(
        n, addr.ctypes.data, pc.ctypes.data, write.ctypes.data, nu.ctypes.data,
        params.ctypes.data, rvalues.ctypes.data, pvalues.ctypes.data, pconf.ctypes.data,
        hit.ctypes.data, way.ctypes.data, evict.ctypes.data, wb.ctypes.data,
        counters.ctypes.data)
    if rc != 0:
        raise MemoryError("the cache model could not allocate its state")
    values = {name: int(v) for name, v in zip(_COUNTERS, counters, strict=True)}
    way16 = way.astype(np.int16)
    return CacheResult(accesses=n, hit=hit.astype(bool), way=way16,
                       victim=np.where(evict.astype(bool), way16, np.int16(-1)),
                       writeback=wb.astype(bool), **values)
