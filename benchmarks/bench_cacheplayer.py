"""Trace-player co-simulation vs per-access cocotb drive of the same cache RTL (accesses/s)."""

from __future__ import annotations

import resource
import time

from hwloop.hdl.cache.params import CacheConfig
from hwloop.sim.cache.model import simulate
from hwloop.sim.cache.patterns import adversarial
from hwloop.sim.cache.player import build_player, compare, run_player

#: Long enough that the start-up's spread (a few tenths of a second between runs) does not
#: swamp the difference to the 10-access run: each is a few seconds.
RUNS = (("player", 10), ("player", 4_000_000), ("direct", 10), ("direct", 60_000))
#: Each run is the fastest of this many (the machine is shared: the least disturbed one); all
#: are checked bit-exact.
REPEATS = 5


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run() -> str:
    config = CacheConfig(sets=16, ways=4, line_bytes=16, addr_bits=32, policy="lru")
    build = build_player(config)
    rows = []
    measured: dict[tuple[str, int], tuple[float, float]] = {}
    for mode, n in RUNS:
        trace = adversarial(n, seed=7, sets=config.sets, line_bytes=config.line_bytes)
        model = simulate(config, trace)
        runs, diffs = [], []
        for _ in range(REPEATS):
            cpu0, start = _child_cpu(), time.monotonic()
            rtl = run_player(config, trace, mode=mode)
            runs.append((time.monotonic() - start, _child_cpu() - cpu0))
            diffs.append(compare(model, rtl.result))
        wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
        diff = next((d for d in diffs if d is not None), None)
        measured[(mode, n)] = (wall, cpu)
        rows.append(f"| {mode} | {n:,} | {wall:.2f} | {cpu:.2f} | "
                    f"{'yes' if diff is None else 'NO: ' + diff} |")

    def marginal(mode: str) -> tuple[float, float]:
        (small_n, small), (big_n, big) = [(n, measured[(m, n)]) for m, n in RUNS if m == mode]
        extra = big_n - small_n
        return extra / max(big[0] - small[0], 1e-9), extra / max(big[1] - small[1], 1e-9)

    player_wall, player_cpu = marginal("player")
    direct_wall, direct_cpu = marginal("direct")
    long_n = RUNS[1][1]
    total_player = long_n / measured[RUNS[1]][0]
    return "\n".join([
        "## Cache trace player vs per-access cocotb drive",
        "",
        "`.venv/bin/python -m benchmarks.run cacheplayer` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). One Verilator build of "
        f"{config.name} (build {'made' if build.built else 'cached'}); adversarial trace; "
        "each run is a whole co-simulation process (simulator start, cocotb, chunk files) and "
        "is checked bit-exact against the golden model. CPU = user+sys of the simulator "
        "process. The 10-access runs measure the fixed start-up cost; the rates below are "
        f"per additional access. Each time is the least of {REPEATS} runs (wall and CPU "
        "separately; every run bit-exact): the machine is shared (2 cores), and single runs "
        "of the 1M / 20k-access version of this benchmark gave 25x to 130x.",
        "",
        "| mode | accesses | wall s | CPU s | bit-exact |",
        "|---|---:|---:|---:|---|",
        *rows,
        "",
        "| per additional access | player | direct | player / direct |",
        "|---|---:|---:|---:|",
        f"| accesses per wall second | {player_wall:,.0f} | {direct_wall:,.0f} | "
        f"**{player_wall / direct_wall:.0f}x** |",
        f"| accesses per CPU second | {player_cpu:,.0f} | {direct_cpu:,.0f} | "
        f"**{player_cpu / direct_cpu:.0f}x** |",
        "",
        f"Including start-up, the {long_n:,}-access player run averaged {total_player:,.0f} "
        "accesses per wall second. Goal: >= 20x over per-access drive.",
        "",
    ])
