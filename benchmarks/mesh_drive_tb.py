"""cocotb test: one GEMM through the bare PE mesh, driven from Python on every clock.

The job file (``HWLOOP_MESH_JOB``) holds the padded operands, the dataflow and the
accelerator's array tiles ``(m0, n0, k0, length)`` (benchmarks/mesh_drive.py). os: per tile
the test packs ``length`` rows of A (``rows`` operands) and of B (``cols`` operands), then on
every cycle pokes them with ``valid``/``first``/``last``, awaits the rising edge and reads
``early``; a row announced by ``early`` (index ``out_row``) is read from ``out`` one cycle
later and added into C (the K tiles' partial sums, as the accumulator scratchpad does). Like
the accelerator's feeder, a tile waits (idle cycles) until its last row is at least ``rows``
cycles behind the previous tile's, so the output chain has drained. ws: the first tile's
weights load one row per cycle; then per cycle a row of A with ``valid`` (and ``switch`` on a
tile's first row) and, in the tile's window from slot ``cols - 1``, a row of the next tile's
weights; every row ``early`` announces is the sums of the next fed m, added into C. With
``"idle_cycles"`` the test only sleeps while the clock runs that many cycles with the inputs
idle: the same array build running free, for comparison. With ``"style": "tasks"`` the outputs
are sampled by a separate monitor coroutine (the usual cocotb driver + monitor structure)
instead of inline. Only cocotb and the standard library are imported, so start-up stays short.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge, Timer


def _nothing() -> None:
    pass


def _sampler(style: str | None, collect, edge):
    """``(sample, monitor task)``: the driver loop calls ``sample()`` after each edge. With
    ``"tasks"`` (the usual cocotb structure) a monitor coroutine of its own calls ``collect``
    on every edge and the driver only pokes; otherwise the driver collects inline."""
    if style != "tasks":
        return collect, None

    async def monitor() -> None:
        while True:
            await edge
            collect()

    return _nothing, cocotb.start_soon(monitor())


@cocotb.test()
async def drive_gemm(dut) -> None:
    began = time.perf_counter()
    spec = json.loads(Path(os.environ["HWLOOP_MESH_JOB"]).read_text())
    R, C, W, ACC = spec["rows"], spec["cols"], spec["in_bits"], spec["acc_bits"]
    a_rows, b_rows = spec.get("a", []), spec.get("b", [])
    wmask, amask, sign = (1 << W) - 1, (1 << ACC) - 1, 1 << (ACC - 1)
    c = [[0] * spec.get("n", 0) for _ in range(spec.get("m", 0))]
    edge = RisingEdge(dut.clk)

    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await edge
    started = time.perf_counter()
    if spec.get("idle_cycles"):
        # the same array running free: Python sleeps while the clock runs idle cycles
        await Timer(spec["idle_cycles"] * 10, "ns")
        finished = time.perf_counter()
        Path(spec["result"]).write_text(json.dumps({
            "c": [], "cycles": spec["idle_cycles"], "error": None,
            "run_s": finished - started, "job_s": time.perf_counter() - began}))
        return

    if spec.get("dataflow") == "ws":
        cycles, error = await _drive_ws(dut, spec, c, edge)
        finished = time.perf_counter()
        Path(spec["result"]).write_text(json.dumps({
            "c": c, "cycles": cycles, "error": error, "run_s": finished - started,
            "job_s": time.perf_counter() - began}))
        return

    sig_a, sig_b = dut.a, dut.b
    sig_valid, sig_first, sig_last = dut.valid, dut.first, dut.last
    sig_early, sig_row, sig_out = dut.early, dut.out_row, dut.out
    pending: deque[tuple[int, int]] = deque()  # tiles whose rows are still to come
    row_next = -1  # the row ``out`` holds after the next edge, or -1
    cycles = 0

    def collect() -> None:
        nonlocal row_next
        if row_next >= 0:
            word = sig_out.value.to_unsigned()
            m0, n0 = pending[0]
            row = c[m0 + row_next]
            for col in range(C):
                x = (word >> (col * ACC)) & amask
                row[n0 + col] += x - ((x & sign) << 1)
            if row_next == 0:  # rows come bottom first
                pending.popleft()
        row_next = int(sig_row.value) if int(sig_early.value) else -1

    sample, monitor_task = _sampler(spec.get("style"), collect, edge)

    last_at = -R  # the cycle the latest ``last`` was poked
    for m0, n0, k0, length in spec["tiles"]:
        a_words = [sum((a_rows[m0 + r][k] & wmask) << (r * W) for r in range(R))
                   for k in range(k0, k0 + length)]
        b_words = [sum((b_rows[k][n0 + col] & wmask) << (col * W) for col in range(C))
                   for k in range(k0, k0 + length)]
        pending.append((m0, n0))
        # a tile's last row of sums must reach the output chain at least ``rows`` cycles after
        # the previous tile's, or it would overwrite rows still shifting out
        idle = last_at + R + 1 - cycles - length
        if idle > 0:
            sig_valid.value = 0
            sig_first.value = 0
            sig_last.value = 0
            for _ in range(idle):
                await edge
                cycles += 1
                sample()
        for i in range(length):
            sig_a.value = a_words[i]
            sig_b.value = b_words[i]
            sig_valid.value = 1
            sig_first.value = 1 if i == 0 else 0
            sig_last.value = 1 if i == length - 1 else 0
            await edge
            cycles += 1
            sample()
        last_at = cycles - 1
    sig_valid.value = 0
    sig_first.value = 0
    sig_last.value = 0
    error = None
    for _ in range(4 * (R + C) + 16):
        if not pending:
            break
        await edge
        cycles += 1
        sample()
    else:
        error = f"{len(pending)} tiles gave no output within {4 * (R + C) + 16} drain cycles"
    finished = time.perf_counter()
    if monitor_task is not None:
        monitor_task.cancel()
    Path(spec["result"]).write_text(json.dumps({
        "c": c, "cycles": cycles, "error": error, "run_s": finished - started,
        "job_s": time.perf_counter() - began}))


async def _drive_ws(dut, spec: dict, c: list[list[int]], edge) -> tuple[int, str | None]:
    """The weight-stationary drive (outputs sampled inline, or by a monitor coroutine with
    ``"style": "tasks"``); returns the cycles from the first poke to the last output row and
    an error or None."""
    R, C, W, ACC = spec["rows"], spec["cols"], spec["in_bits"], spec["acc_bits"]
    a_rows, b_rows, tiles = spec["a"], spec["b"], spec["tiles"]
    wmask, amask, sign = (1 << W) - 1, (1 << ACC) - 1, 1 << (ACC - 1)
    sig_a, sig_valid, sig_switch = dut.a, dut.valid, dut.switch
    sig_wl_valid, sig_wl_row, sig_wl_data = dut.wl_valid, dut.wl_row, dut.wl_data
    sig_early, sig_out = dut.early, dut.out
    pending: deque[tuple[int, int]] = deque()  # (m, n0) of every fed row, in order
    take = False  # ``out`` holds the next pending row after the next edge
    cycles = 0

    def weights(tile) -> list[int]:
        _, n0, k0, _ = tile
        return [sum((b_rows[k0 + r][n0 + col] & wmask) << (col * W) for col in range(C))
                for r in range(R)]

    def collect() -> None:
        nonlocal take
        if take:
            word = sig_out.value.to_unsigned()
            m, n0 = pending.popleft()
            row = c[m]
            for col in range(C):
                x = (word >> (col * ACC)) & amask
                row[n0 + col] += x - ((x & sign) << 1)
        take = bool(int(sig_early.value))

    sample, monitor_task = _sampler(spec.get("style"), collect, edge)

    # prologue: the first tile's weights, one row per cycle
    for r, word in enumerate(weights(tiles[0])):
        sig_wl_valid.value = 1
        sig_wl_row.value = r
        sig_wl_data.value = word
        await edge
        cycles += 1
        sample()
    sig_wl_valid.value = 0
    loading = False  # ``wl_valid`` is set
    for j, (m0, n0, k0, length) in enumerate(tiles):
        a_words = [sum((a_rows[m0 + i][k0 + r] & wmask) << (r * W) for r in range(R))
                   for i in range(length)]
        following = weights(tiles[j + 1]) if j + 1 < len(tiles) else None
        for slot in range(max(length, R + C - 1)):
            if slot < length:
                sig_a.value = a_words[slot]
                sig_valid.value = 1
                sig_switch.value = 1 if slot == 0 else 0
                pending.append((m0 + slot, n0))
            elif slot == length:
                sig_valid.value = 0
                sig_switch.value = 0
            window_row = slot - (C - 1)
            if following is not None and 0 <= window_row < R:
                sig_wl_valid.value = 1
                sig_wl_row.value = window_row
                sig_wl_data.value = following[window_row]
                loading = True
            elif loading:
                sig_wl_valid.value = 0
                loading = False
            await edge
            cycles += 1
            sample()
    sig_valid.value = 0
    sig_switch.value = 0
    sig_wl_valid.value = 0
    error = f"{len(pending)} rows gave no output within {4 * (R + C) + 16} drain cycles"
    for _ in range(4 * (R + C) + 16):
        if not pending:
            error = None
            break
        await edge
        cycles += 1
        sample()
    if monitor_task is not None:
        monitor_task.cancel()
    return cycles, error
