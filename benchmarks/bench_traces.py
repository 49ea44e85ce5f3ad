"""Trace pipeline: capture and parse throughput, bytes per access, LRU/OPT hit rates.

For every bundled recipe: capture the raw data-access stream from ``main`` on (no L1 filter,
capped), time it, filter it offline through the 32 KiB 8-way L1 (the same exact LRU filter the
recipes use), and replay both streams through 64 KiB and 256 KiB 16-way L2s with LRU and
Belady's OPT (C1's golden model). Separately: valgrind lackey alone (output to /dev/null) and
the lackey text parser alone, on the same program.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from hwloop.capture import capture
from hwloop.recipes import RECIPES, build
from hwloop.sim.cache.model import CacheConfig, simulate
from hwloop.traces import L1Filter, LackeyParser, read_trace, trace_info, write_trace

RAW_CAP = 3_000_000
L1 = "32K:8:64"
L2S = ((64, 16), (256, 16))  # (KiB, ways), 64-byte lines
CAPTURE_HEADER = (
    "| recipe | traced | wall s | traced/s | valgrind CPU s | parse+write CPU s | capped "
    "| raw accesses | raw bytes/access | L1-filtered accesses | filtered bytes/access |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|")


def _hit_rates(records: np.ndarray) -> list[str]:
    cells = []
    for kib, ways in L2S:
        sets = kib * 1024 // (ways * 64)
        for policy in ("lru", "opt"):
            config = CacheConfig(sets=sets, ways=ways, line_bytes=64, policy=policy)
            cells.append(f"{simulate(config, records).hit_rate:.3f}")
    return cells


def _cpu_children() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def run() -> str:
    if shutil.which("valgrind") is None:
        return "## Traces\n\nSkipped: valgrind is not installed.\n"
    load = os.getloadavg()[0]
    rows_capture, rows_rates = [], []
    with tempfile.TemporaryDirectory(prefix="hwloop-bench-traces-") as tmp:
        folder = Path(tmp)
        for recipe in RECIPES.values():
            program = build(recipe)
            raw_path = folder / f"{recipe.name}.raw.trace"
            cpu_before, own_before = _cpu_children(), time.process_time()
            stats = capture(str(program), list(recipe.args), raw_path, skip="main",
                            max_accesses=RAW_CAP)
            valgrind_cpu = _cpu_children() - cpu_before
            own_cpu = time.process_time() - own_before
            raw = read_trace(raw_path)
            l1 = L1Filter.from_spec(L1)
            filtered = np.concatenate([l1(raw[i: i + (1 << 18)])
                                       for i in range(0, len(raw), 1 << 18)])
            l2_path = folder / f"{recipe.name}.l2.trace"
            write_trace(l2_path, filtered)
            raw_info, l2_info = trace_info(raw_path), trace_info(l2_path)
            traced = stats.data_accesses
            rows_capture.append(
                f"| {recipe.name} | {traced:,} | {stats.seconds:.1f} | "
                f"{traced / stats.seconds / 1e3:,.0f}k | {valgrind_cpu:.1f} | {own_cpu:.1f} | "
                f"{'yes' if stats.stopped_early else 'no'} | {len(raw):,} | "
                f"{raw_info['file_bytes'] / max(len(raw), 1):.2f} | {len(filtered):,} | "
                f"{l2_info['file_bytes'] / max(len(filtered), 1):.2f} |")
            rows_rates.append(f"| {recipe.name} | raw | {len(raw):,} | "
                              f"{raw_info['unique_lines']:,} | " + " | ".join(_hit_rates(raw))
                              + " |")
            rows_rates.append(f"| {recipe.name} | L1-filtered | {len(filtered):,} | "
                              f"{l2_info['unique_lines']:,} | "
                              + " | ".join(_hit_rates(filtered)) + " |")

        # valgrind lackey alone and the parser alone, on the compress recipe's program
        recipe = RECIPES["compress"]
        program = build(recipe)
        args = ["60000"]
        text = folder / "lackey.txt"
        start, lackey_before = time.monotonic(), _cpu_children()
        subprocess.run(["valgrind", "--tool=lackey", "--trace-mem=yes", f"--log-file={text}",
                        str(program), *args], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        lackey_seconds = time.monotonic() - start
        lackey_cpu = _cpu_children() - lackey_before
        text_bytes = text.stat().st_size
        parser = LackeyParser(source=str(text))
        wall, cpu = time.monotonic(), time.process_time()
        parsed = 0
        with open(text, "rb") as handle:
            while block := handle.read(1 << 17):
                parsed += len(parser.feed(block))
        parsed += len(parser.finish())
        parse_wall, parse_cpu = time.monotonic() - wall, time.process_time() - cpu
        lines = parser.lines

    capture_table = "\n".join(rows_capture)
    rates_table = "\n".join(rows_rates)
    return f"""## Traces

What the trace pipeline costs and what its traces look like (load average
{load:.1f} on 2 cores while measuring: other jobs shared the machine, so wall-clock rates are
pessimistic; valgrind CPU seconds are the capture's own cost).

### Capture (valgrind lackey → pipe → parser → .trace), per recipe

Raw capture from `main` on, capped at {RAW_CAP:,} accesses; then filtered offline through a
{L1} LRU L1. "traced" counts every data access lackey reported (incl. start-up before
`main`); rate = traced / wall seconds.

{CAPTURE_HEADER}
{capture_table}

### Parser alone

valgrind lackey alone, output to a file ({text_bytes / 2**20:.0f} MiB of text, {lines:,} lines;
`compress 60000`): {lackey_seconds:.1f} s wall, {lackey_cpu:.1f} s CPU
({lines / lackey_cpu / 1e6:.1f} M lines/s of valgrind CPU). The parser (numpy-vectorised, 128 KiB
blocks, `LackeyParser`) on that file: {parsed:,} accesses in {parse_wall:.2f} s wall /
{parse_cpu:.2f} s CPU =
**{parsed / parse_cpu / 1e6:.2f} M accesses/s** ({lines / parse_cpu / 1e6:.1f} M lines/s) of CPU.

### LRU vs Belady (OPT) hit rates, raw vs L1-filtered streams

L2 caches with 64-byte lines (C1's golden model, `hwloop.sim.cache.model.simulate`). The raw
stream is L1-like: almost everything hits in any cache and LRU ≈ OPT. On the L1-filtered
(L2-like) stream the gap between LRU and OPT opens up — the room a learned policy can win.

| recipe | stream | accesses | unique lines | 64K LRU | 64K OPT | 256K LRU | 256K OPT |
|---|---|---|---|---|---|---|---|
{rates_table}
"""

