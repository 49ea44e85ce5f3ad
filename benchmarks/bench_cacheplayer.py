"""Trace-player co-simulation vs per-access cocotb drive of the same cache RTL (accesses/s)."""

from __future__ import annotations

import time

from hwloop.hdl.cache.params import CacheConfig
from hwloop.sim.cache.model import simulate
from hwloop.sim.cache.patterns import adversarial
from hwloop.sim.cache.player import build_player, compare, run_player

PLAYER_N = 400_000
DIRECT_N = 20_000


def run() -> str:
    config = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy="lru")
    build = build_player(config)
    rows = []
    results = {}
    for mode, n in (("player", PLAYER_N), ("direct", DIRECT_N), ("player", DIRECT_N)):
        trace = adversarial(n, seed=7, sets=config.sets, line_bytes=config.line_bytes)
        start = time.monotonic()
        rtl = run_player(config, trace, mode=mode)
        wall = time.monotonic() - start
        diff = compare(simulate(config, trace), rtl.result)
        results[(mode, n)] = n / wall
        rows.append(f"| {mode} | {n:,} | {wall:.1f} | {n / wall:,.0f} | "
                    f"{'yes' if diff is None else 'NO: ' + diff} |")
    ratio = results[("player", PLAYER_N)] / results[("direct", DIRECT_N)]
    ratio_same = results[("player", DIRECT_N)] / results[("direct", DIRECT_N)]
    return "\n".join([
        "## Cache trace player vs per-access cocotb drive",
        "",
        "`.venv/bin/python -m benchmarks.run cacheplayer` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). One Verilator build of a "
        f"{config.name} cache (build {'made' if build.built else 'cached'}, "
        f"{build.seconds:.0f} s); adversarial trace; wall time of the whole co-simulation "
        "process (simulator start, cocotb, chunk files) per run; each run checked bit-exact "
        "against the golden model. The machine is shared (2 cores, other jobs running), so "
        "absolute rates are noisy; the ratio is the point.",
        "",
        "| mode | accesses | wall s | accesses/s | bit-exact |",
        "|---|---:|---:|---:|---|",
        *rows,
        "",
        f"Trace player over per-access drive: **{ratio:.0f}x** (long trace), {ratio_same:.0f}x at "
        f"the same {DIRECT_N:,} accesses (fixed start-up cost included). Goal: >= 20x.",
        "",
    ])
