"""Golden cache model throughput, and policy hit rates on the bundled traces."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hwloop.hdl.cache.params import CacheConfig
from hwloop.hdl.cache.prefetcher import PrefetcherConfig
from hwloop.paths import cache_dir
from hwloop.sim.cache.model import simulate
from hwloop.sim.cache.patterns import TRACE_DTYPE

ROOT = Path(__file__).resolve().parent.parent
N = 5_000_000
POLICIES = ("lru", "plru", "srrip", "random", "opt")


def _synthetic(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.zeros(n, TRACE_DTYPE)
    t["addr"] = (rng.zipf(1.2, n) % (1 << 20)) * 64
    t["pc"] = 0x400000 + rng.integers(0, 256, n) * 4
    t["write"] = rng.random(n) < 0.3
    return t


def _traces() -> tuple[list[Path], str]:
    bundled = sorted((ROOT / "traces").glob("*.trace"))
    if bundled:
        return bundled, "traces/ (from `make traces`)"
    folder = cache_dir() / "bench-cache-traces"
    found = sorted(folder.glob("*.trace"))
    if not found:
        proc = subprocess.run([sys.executable, "-m", "hwloop", "trace", "recipes", "--all",
                               "-o", str(folder)], capture_output=True, text=True)
        if proc.returncode:
            return [], f"none (`hwloop trace recipes --all` failed: {proc.stderr.strip()})"
        found = sorted(folder.glob("*.trace"))
    return found, "`hwloop trace recipes --all` (same recipes and L1 filter as `make traces`)"


def run() -> str:
    trace = _synthetic(N)
    config = dict(sets=1024, ways=16, line_bytes=64)
    simulate(CacheConfig(**config), trace)  # compile the kernel, touch the memory first
    rows = []
    cases = [(p, CacheConfig(**config, policy=p), None) for p in POLICIES]
    cases += [(f"lru + {k} prefetcher", CacheConfig(**config), PrefetcherConfig(kind=k))
              for k in ("nextline", "stride")]
    for label, cache, prefetcher in cases:
        start, cpu = time.perf_counter(), time.process_time()
        r = simulate(cache, trace, prefetcher=prefetcher)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        rows.append(f"| {label} | {N / wall / 1e6:.1f} | {N / cpu / 1e6:.1f} | "
                    f"{r.hit_rate:.4f} |")

    from hwloop.traces import read_trace

    files, origin = _traces()
    l2 = dict(sets=64, ways=16, line_bytes=64)  # 64 KiB 16-way, as FIELD.md's L2 example
    trows = []
    for path in files:
        t = read_trace(path)
        rates = {p: simulate(CacheConfig(**l2, policy=p), t).hit_rate
                 for p in ("lru", "plru", "srrip", "opt")}
        span = rates["opt"] - rates["lru"]
        norm = {p: (rates[p] - rates["lru"]) / span if span > 0 else float("nan")
                for p in ("plru", "srrip")}
        trows.append(f"| {path.stem} | {t.size:,} | {rates['lru']:.4f} | {rates['plru']:.4f} | "
                     f"{rates['srrip']:.4f} | {rates['opt']:.4f} | {norm['plru']:+.3f} | "
                     f"{norm['srrip']:+.3f} |")
    # a PC-table policy trained offline on OPT's decisions (first half), tested on the second
    import tempfile

    from hwloop.hdl.cache.table import save_table
    from hwloop.sim.cache.opt_table import opt_table

    lrows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            t = read_trace(path)
            train, test = t[: t.size // 2], t[t.size // 2:]
            rates = {p: simulate(CacheConfig(**l2, policy=p), test).hit_rate
                     for p in ("lru", "srrip", "opt")}
            for history in (0, 2):
                table_path = Path(tmp) / f"{path.stem}-{history}.npz"
                save_table(table_path, opt_table(CacheConfig(**l2), train, entries=2048,
                                                 entry_bits=5, history=history))
                rates[f"table{history}"] = simulate(
                    CacheConfig(**l2, policy="table", table=table_path), test).hit_rate
            span = rates["opt"] - rates["lru"]
            lrows.append(
                f"| {path.stem} | {rates['lru']:.4f} | {rates['srrip']:.4f} | "
                f"{rates['table0']:.4f} | {rates['table2']:.4f} | {rates['opt']:.4f} | "
                + " | ".join(f"{(rates[k] - rates['lru']) / span:+.3f}" if span > 0 else "n/a"
                             for k in ("srrip", "table0", "table2")) + " |")
    lines = [
        "## Cache golden model",
        "",
        "`.venv/bin/python -m benchmarks.run cachemodel` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        f"Throughput: {N:,} synthetic accesses (Zipf lines, 30% writes) through a 1 MiB "
        "1024-set 16-way cache; C kernel via ctypes, wall time of `simulate()` including the "
        "per-access log; OPT includes its next-use pass. Shared 2-core machine "
        f"(load average {os.getloadavg()[0]:.1f} at the start): CPU time is the steadier "
        "measure.",
        "",
        "| policy | M accesses / wall s | M accesses / CPU s | hit rate |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"Hit rates on the bundled traces, {origin}: a 64 KiB 16-way 64 B L2 on the "
        "L1-filtered stream. norm = (r − r_LRU)/(r_OPT − r_LRU), the Parrot metric.",
        "",
    ]
    if trows:
        lines += ["| trace | accesses | LRU | PLRU | SRRIP | OPT | PLRU norm | SRRIP norm |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|", *trows, ""]
        lines += [
            "PC-table policy (`--policy table`, Hawkeye-like: 2048 x 5-bit entries, 3-bit RRPV) "
            "trained offline by `hwloop.sim.cache.opt_table` on OPT's keep/evict decisions over "
            "the first half of each trace, evaluated on the second half (all columns on the "
            "second half); table0 indexes by the PC, table2 by the PC and the 2 previous PCs.",
            "",
            "| trace | LRU | SRRIP | table0 | table2 | OPT | SRRIP norm | table0 norm | "
            "table2 norm |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|", *lrows, ""]
    else:
        lines += ["No traces available.", ""]
    return "\n".join(lines)
