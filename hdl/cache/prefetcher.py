"""Prefetchers attached to the cache: next-line, PC-indexed stride, and a delta table.

The prefetcher watches each demand access (the cache's stage 1), proposes up to ``degree``
lines, and keeps them in a FIFO queue of ``queue`` entries until their fill latency has passed:
a request made by demand access i may fill the cache before demand access i+1+latency. The
cache then performs the fill (before that demand); a fill of a line already present does
nothing. Exact semantics: docs/caches.md; golden model: sim/cache/cachemodel.c.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwloop.errors import ParameterError
from hwloop.validate import check_known

from .hashing import fold, rotl
from .table import Table

PREFETCHERS = ("nextline", "stride", "table")
COUNTER_BITS = 32
PC_BITS = 64
STRIDE_BITS = 16
TIME_BITS = 32


@dataclass(frozen=True, kw_only=True)
class PrefetcherConfig:
    """A prefetcher (semantics in docs/caches.md).

    ``kind``: ``nextline`` (on a miss or a first hit on a prefetched line: lines +1..+degree),
    ``stride`` (PC-indexed table of ``entries`` with 2-bit confidence), ``table`` (delta table
    from the file ``table`` indexed by a hash of the PC and the last line deltas). Requests
    wait in a queue of ``queue`` entries and may fill the cache ``latency`` demand accesses
    after the one that made them.
    """

    kind: str
    degree: int = 1
    latency: int = 4
    queue: int = 8
    entries: int = 256
    table: str | Path | None = None

    def __post_init__(self) -> None:
        if self.kind not in PREFETCHERS:
            raise ParameterError(
                f"unknown prefetcher {self.kind!r} (have {', '.join(PREFETCHERS)})")
        for name, lo, hi in (("degree", 1, 4), ("latency", 1, 255), ("queue", 1, 16)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ParameterError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
        e = self.entries
        if isinstance(e, bool) or not isinstance(e, int) or e < 1 or e > 65536 or e & (e - 1):
            raise ParameterError(f"entries must be a power of two in 1..65536, not {e!r}")
        if self.kind == "table" and self.table is None:
            raise ParameterError("prefetcher 'table' needs a table file (--prefetch-table FILE)")
        if self.kind != "table" and self.table is not None:
            raise ParameterError(
                f"a prefetch table file is only used by prefetcher 'table', not {self.kind!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PrefetcherConfig:
        check_known(values, cls, "prefetcher")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["table"] = None if self.table is None else str(self.table)
        return values

    @property
    def tag(self) -> str:
        """The prefetcher's part of a module name: its kind, then each sizing parameter that
        differs from its default (``_d`` degree, ``_lat`` latency, ``_q`` queue, ``_e``
        entries), so differently sized prefetchers never share a module name."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        parts = [f"_{short}{getattr(self, field)}" for field, short in
                 (("degree", "d"), ("latency", "lat"), ("queue", "q"), ("entries", "e"))
                 if getattr(self, field) != defaults[field]]
        return self.kind + "".join(parts)


class Prefetcher(wiring.Component):
    """The prefetcher of ``config`` for a cache with ``line_bits``-bit line addresses.

    Stage-0 inputs (a demand accepted this cycle): ``lookup_valid``, ``lookup_pc``,
    ``lookup_line``. Stage-1 inputs (the same demand one cycle later, after the tag compare):
    ``demand_valid``, ``demand_line``, ``demand_pc``, ``demand_miss``, ``demand_pf_hit``.
    ``fill_valid``/``fill_line``: the queue head may fill now; ``fill_taken`` pops it.
    """

    def __init__(self, *, config: PrefetcherConfig, line_bits: int, table: Table | None = None):
        self.config = config
        self.line_bits = line_bits
        self.table = table
        if config.kind == "table" and table is None:
            raise ParameterError("prefetcher 'table' needs its table")
        super().__init__({
            "lookup_valid": In(1), "lookup_pc": In(PC_BITS), "lookup_line": In(line_bits),
            "demand_valid": In(1), "demand_line": In(line_bits), "demand_pc": In(PC_BITS),
            "demand_miss": In(1), "demand_pf_hit": In(1),
            "fill_valid": Out(1), "fill_line": Out(line_bits), "fill_taken": In(1),
            "requests": Out(COUNTER_BITS), "late": Out(COUNTER_BITS),
            "dropped": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        L = self.line_bits
        Q = cfg.queue

        # demand accesses accepted so far = the index of the next demand
        now = Signal(TIME_BITS)
        with m.If(self.lookup_valid):
            m.d.sync += now.eq(now + 1)

        # ---------------- proposal: go, step ----------------
        go = Signal()
        step = Signal(L)
        if cfg.kind == "nextline":
            m.d.comb += [go.eq(self.demand_miss | self.demand_pf_hit), step.eq(1)]
        elif cfg.kind == "stride":
            n = cfg.entries.bit_length() - 1
            width = L + STRIDE_BITS + 2
            m.submodules.strides = mem = Memory(shape=width, depth=max(cfg.entries, 2), init=[])
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=(wr,))
            m.d.comb += rd.addr.eq(fold(self.lookup_pc[2:], PC_BITS - 2, n))
            s1_index = Signal(max(n, 1))
            m.d.sync += s1_index.eq(rd.addr)
            last = rd.data[:L]
            stride = rd.data[L:L + STRIDE_BITS]
            conf = rd.data[L + STRIDE_BITS:]
            delta = Signal(STRIDE_BITS)
            new_stride = Signal(STRIDE_BITS)
            new_conf = Signal(2)
            m.d.comb += [delta.eq(self.demand_line - last), new_stride.eq(stride),
                         new_conf.eq(conf)]
            with m.If(delta == stride):
                m.d.comb += new_conf.eq(Mux(conf == 3, 3, conf + 1))
            with m.Elif(conf == 0):
                m.d.comb += new_stride.eq(delta)
            with m.Else():
                m.d.comb += new_conf.eq(conf - 1)
            m.d.comb += [
                wr.addr.eq(s1_index), wr.en.eq(self.demand_valid),
                wr.data.eq(Cat(self.demand_line, new_stride, new_conf)),
                go.eq((new_conf >= 2) & (new_stride != 0)),
                step.eq(new_stride.as_signed()),
            ]
        else:  # table
            table = self.table
            assert table is not None
            n = table.index_bits
            k = table.entry_bits
            m.submodules.deltas = mem = Memory(
                shape=k + 2, depth=max(table.entries, 2),
                init=[(int(v) & ((1 << k) - 1)) | (int(c) << k)
                      for v, c in zip(table.values, table.confidence, strict=True)]
                + [0] * (table.entries < 2))
            rd = mem.read_port()
            prev_line = Signal(L)
            history = [Signal(L, name=f"delta_hist{j}") for j in range(table.history)]
            current = Signal(L)
            m.d.comb += current.eq(self.lookup_line - prev_line)
            deltas = [current, *history]
            index = fold(self.lookup_pc[2:], PC_BITS - 2, n)
            for j in range(1, table.history + 1):
                index = index ^ rotl(fold(deltas[j - 1], L, n), j, n)
            m.d.comb += rd.addr.eq(index)
            with m.If(self.lookup_valid):
                m.d.sync += prev_line.eq(self.lookup_line)
                for j in range(table.history):
                    m.d.sync += history[j].eq(deltas[j])
            value = rd.data[:k]
            confidence = rd.data[k:]
            m.d.comb += [go.eq((value != 0) & (confidence >= 2)), step.eq(value.as_signed())]

        # ---------------- the request queue (entry 0 is the head) ----------------
        q_line = Array(Signal(L, name=f"q_line{i}") for i in range(Q))
        q_ready = Array(Signal(TIME_BITS, name=f"q_ready{i}") for i in range(Q))
        count = Signal(range(Q + 1))
        # due: now has reached the head's ready time, modulo 2**TIME_BITS (`now` wraps after
        # 2**32 demand accesses; a ready time is at most 255 ahead of it and a due head fills
        # before the next demand); `<=` made a request pushed just before the wrap, whose ready
        # time wrapped to a small value, fill at once
        due = Signal(TIME_BITS)
        m.d.comb += [due.eq(now - q_ready[0]),
                     self.fill_valid.eq((count != 0) & ~due[TIME_BITS - 1]),
                     self.fill_line.eq(q_line[0])]
        with m.If(self.fill_taken):
            for i in range(Q - 1):
                m.d.sync += [q_line[i].eq(q_line[i + 1]), q_ready[i].eq(q_ready[i + 1])]
            m.d.sync += count.eq(count - 1)

        in_queue = [Signal(name=f"queued{i}") for i in range(Q)]
        m.d.comb += [in_queue[i].eq(i < count) for i in range(Q)]

        def queued(line) -> Signal:
            hit = Signal()
            m.d.comb += hit.eq(Cat(*[in_queue[i] & (q_line[i] == line)
                                     for i in range(Q)]).any())
            return hit

        late = Signal()
        m.d.comb += late.eq(self.demand_valid & self.demand_miss & queued(self.demand_line))
        with m.If(late):
            m.d.sync += self.late.eq(self.late + 1)

        # candidates k=1..degree, each pushed unless queued already or the queue is full
        fill_count = count
        pushed = Const(0, 3)
        dropped = Const(0, 3)
        active = Signal()
        m.d.comb += active.eq(self.demand_valid & go)
        earlier: list[tuple[Signal, Signal]] = []  # (candidate, pushed) of this proposal
        for k in range(1, cfg.degree + 1):
            cand = Signal(L, name=f"cand{k}")
            m.d.comb += cand.eq(self.demand_line + step * k)
            # in a small line-address space two candidates can be one line (step 2**(L-1),
            # k and k+2): the second is then already queued, by this proposal
            dup = Cat(queued(cand), *[p & (c == cand) for c, p in earlier]).any()
            push = Signal(name=f"push{k}")
            full = Signal(name=f"full{k}")
            slot = Signal(range(Q + 1), name=f"slot{k}")
            m.d.comb += [slot.eq(fill_count), full.eq(slot == Q),
                         push.eq(active & ~dup & ~full)]
            with m.If(push):
                m.d.sync += [q_line[slot].eq(cand), q_ready[slot].eq(now + cfg.latency)]
            pushed = pushed + push
            dropped = dropped + (active & ~dup & full)
            fill_count = Mux(push, slot + 1, slot)
            earlier.append((cand, push))
        with m.If(active):
            m.d.sync += [count.eq(fill_count), self.requests.eq(self.requests + pushed),
                         self.dropped.eq(self.dropped + dropped)]
        return m
