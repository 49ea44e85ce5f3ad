"""The cocotb side of the cache trace player (run by :func:`hwloop.sim.cache.player.run_player`).

Reads the job (``$HWLOOP_PLAYER_JOB``), then per chunk: writes ``trace_chunk.bin`` and
``pc_chunk.bin`` (big-endian words for ``$fread``), pulses
``load`` and ``run``, waits for ``done`` (the clock runs in the simulator meanwhile), pulses
``dump``, parses ``result_chunk.hex`` and reads the counters (their totals past any wrap).
``mode="direct"`` drives each access from Python. Writes ``rtl.npz`` with the per-access log
and the counters.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, with_timeout

COUNTERS = ("hits", "misses", "evictions", "writebacks")
PF_COUNTERS = ("pf_requests", "pf_issued", "pf_useful", "pf_late", "pf_evicted_unused",
               "pf_dropped")


def _big_endian(values: np.ndarray, nbytes: int) -> np.ndarray:
    """Each value as its low ``nbytes`` bytes, most significant first (n x nbytes uint8)."""
    wide = np.ascontiguousarray(values, dtype=">u8").view(np.uint8).reshape(-1, 8)
    return wide[:, 8 - nbytes:]


def _trace_image(addr: np.ndarray, pc_index: np.ndarray, write: np.ndarray, gap: np.ndarray,
                 nbytes: int) -> bytes:
    """The trace memory image for $fread: {gap|write byte, PC index, addr} per word."""
    head = ((gap.astype(np.uint8) & 0xF) << 4 | (write.astype(np.uint8) & 1))[:, None]
    return np.hstack([head, _big_endian(pc_index, 2), _big_endian(addr, nbytes)]).tobytes()


def _parse_results(data: bytes, m: int) -> np.ndarray:
    """The first ``m`` words of a $writememh dump of 20-bit words (5 hex digits a line)."""
    rows = np.frombuffer(data, dtype=np.uint8)[: m * 6].reshape(m, 6)
    if m and not (rows[:, 5] == ord("\n")).all():  # unexpected layout: parse it slowly
        return np.array([int(x, 16) for x in data.split()[:m]], dtype=np.uint32)
    lookup = np.zeros(256, dtype=np.uint32)
    lookup[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
    lookup[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
    lookup[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
    words = np.zeros(m, dtype=np.uint32)
    for col in range(5):
        words = (words << np.uint32(4)) | lookup[rows[:, col]]
    return words


class _Counters:
    """Totals of the RTL's event counters, which wrap at ``2**bits``: read after every chunk
    (fewer events than a counter's range), each step is added modulo the range, so the totals
    are exact for a trace of any length."""

    def __init__(self, names: tuple[str, ...], bits: int):
        self.names, self.mask = names, (1 << bits) - 1
        self.last = dict.fromkeys(names, 0)  # the counters are cleared by reset
        self.total = dict.fromkeys(names, 0)

    def read(self, dut) -> None:
        for name in self.names:
            value = int(getattr(dut, name).value)
            self.total[name] += (value - self.last[name]) & self.mask
            self.last[name] = value


async def _pulse(dut, name: str) -> None:
    getattr(dut, name).value = 1
    await RisingEdge(dut.clk)
    getattr(dut, name).value = 0


@cocotb.test()
async def play(dut):
    job = json.loads(Path(os.environ["HWLOOP_PLAYER_JOB"]).read_text())
    with np.load(job["trace"], allow_pickle=False) as data:
        addr = data["addr"] & np.uint64((1 << job["addr_bits"]) - 1) \
            if job["addr_bits"] < 64 else data["addr"]
        pc, write, gap = data["pc"], data["write"], data["gap"]
    n = int(addr.size)
    chunk = int(job["chunk"])
    counters = _Counters(COUNTERS + (PF_COUNTERS if job["prefetch"] else ()),
                         int(job["counter_bits"]))
    for name in ("load", "run", "dump", "direct", "drv_valid", "drv_write"):
        getattr(dut, name).value = 0
    dut.drv_addr.value = 0
    dut.drv_pc.value = 0
    dut.count.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    hit = np.zeros(n, np.uint8)
    way = np.zeros(n, np.int16)
    evict = np.zeros(n, np.uint8)
    wb = np.zeros(n, np.uint8)
    cycles = 0
    if job["mode"] == "direct":
        dut.direct.value = 1
        issued = done = 0
        while done < n:
            await FallingEdge(dut.clk)
            cycles += 1
            if dut.resp_valid.value:
                hit[done] = int(dut.resp_hit.value)
                way[done] = int(dut.resp_way.value)
                evict[done] = int(dut.resp_evict.value)
                wb[done] = int(dut.resp_writeback.value)
                done += 1
                if done % chunk == 0:
                    counters.read(dut)
            if issued < n and dut.drv_ready.value:
                dut.drv_addr.value = int(addr[issued])
                dut.drv_pc.value = int(pc[issued])
                dut.drv_write.value = int(write[issued])
                dut.drv_valid.value = 1
                issued += 1
            else:
                dut.drv_valid.value = 0
    else:
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            m = stop - start
            pcs, pc_index = np.unique(pc[start:stop], return_inverse=True)
            Path("pc_chunk.bin").write_bytes(_big_endian(pcs, 8).tobytes())
            Path("trace_chunk.bin").write_bytes(
                _trace_image(addr[start:stop], pc_index.astype(np.uint64), write[start:stop],
                             gap[start:stop], int(job["addr_bytes"])))
            dut.count.value = m
            await _pulse(dut, "load")
            await _pulse(dut, "run")
            # right after the edge `done` may still read as the last chunk's: one more cycle
            # (a chunk takes at least three)
            await RisingEdge(dut.clk)
            if not dut.done.value:
                # generous bound: gaps, prefetch fills (2 cycles each) and the pipeline
                bound = 10 * (m * (16 + 8 * 4) + 100)
                await with_timeout(RisingEdge(dut.done), bound, "ns")
            await _pulse(dut, "dump")
            await RisingEdge(dut.clk)
            words = _parse_results(Path("result_chunk.hex").read_bytes(), m)
            way[start:stop] = words & 0xFF
            hit[start:stop] = (words >> 8) & 1
            evict[start:stop] = (words >> 12) & 1
            wb[start:stop] = (words >> 16) & 1
            counters.read(dut)
    # let ready prefetch fills drain (2 cycles each, at most 16 queued)
    await ClockCycles(dut.clk, 40)
    counters.read(dut)
    totals = {**counters.total, "cycles": cycles}
    tmp = Path(job["out"] + ".tmp.npz")
    np.savez(tmp, hit=hit, way=way, evict=evict, writeback=wb,
             counters=np.array(json.dumps(totals)))
    os.replace(tmp, job["out"])
