"""The analytical model: cycles and action counts of a GEMM on the accelerator, in closed form.

It walks the same instruction program the runner writes into the hardware (see program.py) and
adds up, per instruction, what the controller does. The controller fetches the first
instruction (START_CYCLES), then each instruction takes the longer of its feeder and its DMA,
which run in parallel: the next one (prefetched while the engines run) is dispatched in the
last cycle of the longer one, the cycle that the engines would be seen idle in, counted from
the dispatch; the last instruction's such cycle ends the run (DONE_CYCLES):

feeder (array tiles back to back, ``P`` cycles apart):
    os: P = max(length, rows) (a column's shadow registers shift out over ``rows`` cycles);
        an instruction's first tile may not end less than ``rows`` cycles after the previous
        tile ended, so its feed may stall: stall = max(0, prev_last + rows - length - dispatch)
    ws: P = max(length, rows, cols, 2), after a weight prologue of ``prologue_length``
        cycles (one unless cols < rows; the first tile's first slots load the rest, just in
        time: ``rows`` cycles on a streaming or following compute, whose feed may stall; the next
        tile's weights load in the ``rows`` cycles from slot cols-1 of the current tile, into
        the next tile, or the next compute, if it is short); P = max(length, rows + cols - 1, 2)
        on a streaming compute (its feed stalls would delay those loads);
        no prologue when the previous instruction preloaded the weights (``preloads_next``)
    at least GUARD cycles, as long as a drain after the last feed (os: 2*rows + cols; ws:
    rows + cols), so at most one drain is outstanding at a dispatch
drain (overlaps the next instruction): the last sums are in the scratchpad
    stall + (tiles-1)*P + length + 2*rows + cols cycles after dispatch (os: skew, mesh,
    deskew, shift-out; ws: rows + cols, skew, mesh, deskew, plus the prologue)
DMA (a read path and a write path of ``bus_bytes`` each, working at the same time):
    loads: the A beats, then the B beats (alternating on a streaming instruction, whose
        compute waits per row for them: ``stream_wait``), one request every
        ``ceil(row bytes / bus_bytes)`` cycles (a beat moves ``floor(bus_bytes / row bytes)``
        rows, at least one; bursts never share a beat), from the cycle after dispatch or when
        the read path is free again; done ``mem_latency + 1`` cycles after the last request
        (an ``ahead`` instruction: with its last request, but not before the previous
        instruction's last response; the next compute then waits per row: ``follow_wait``)
    stores: one row (``cols`` outputs of ``out_bytes``) per ``ceil(row bytes / bus_bytes)``
        cycles, from the cycle after dispatch, when the write path is free and the previous
        instruction's drain is complete, or (a store marked by ``mark_store_waits``) burst by
        burst once the array tiles it reads are drained (ws, and os stores in drain order:
        once the first row of its last tile is; the drain stays ahead); done two cycles after
        the last row is read
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hwloop.sim.systolic.mapping import Gemm, Mapping, elem_bytes, out_bytes
from hwloop.sim.systolic.program import (
    Compute,
    Instruction,
    Repeat,
    beats,
    build_program,
    cycles_per_beat,
    multiplicities,
    nested_repeats,
    prologue_length,
    rows_per_beat,
)

#: Action names counted by both the model and the RTL's hardware counters. Scratchpad actions
#: count elements (inputs, weights, accumulators) moved through a port, not rows.
ACTIONS: tuple[str, ...] = (
    "mac", "ifmap_sram_read", "ifmap_sram_write", "weight_sram_read", "weight_sram_write",
    "acc_sram_read", "acc_sram_write", "dram_read_bytes", "dram_write_bytes", "pe_reg_write",
)

# Fixed cycle costs of the controller's sequencing, from the RTL's pipeline stages.
START_CYCLES = 1     # fetch of the first instruction
DISPATCH_CYCLES = 0  # per instruction: dispatched in the last cycle of the previous one
DONE_CYCLES = 1      # the cycle that ends the last instruction


@dataclass
class GemmRun:
    cycles: int
    actions: dict[str, int]
    c: np.ndarray | None = None
    sim_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


def tile_period(params, instr: Instruction) -> int:
    """Cycles between the starts of an instruction's array tiles."""
    c = instr.compute
    R, C = params.rows, params.cols
    if params.dataflow == "os":
        return max(c.length, R)
    return max(c.length, R + C - 1, 2) if _feed_may_stall(instr) \
        else max(c.length, R, C, 2)


def _feed_may_stall(instr: Instruction) -> bool:
    """A streaming or following compute waits for rows still arriving: its slots may stall,
    so nothing may be timed just in time against them (ws: its tile period, its prologue)."""
    return instr.stream or instr.follow


def feed_stall(params, c: Compute, since_last: int | None) -> int:
    """os: cycles the first tile waits; ``since_last`` = dispatch - previous tile's last feed."""
    if params.dataflow != "os" or since_last is None:
        return 0
    return max(0, params.rows - c.length - since_last)


def _drain_latency(params) -> int:
    """Cycles from a tile's last feed until its last row of sums is read for writing (os:
    skew, mesh, deskew and the shadow shift-out; ws: skew, mesh, deskew). Every compute also
    keeps the feeder busy at least this long, so at most one drain is outstanding."""
    R, C = params.rows, params.cols
    return 2 * R + C if params.dataflow == "os" else R + C


#: Where a compute whose feed may stall feeds its slots: ``(base, steps)``; slot ``g`` (the
#: ``g``-th cycle of its tiles, ``i * period + s``) ends ``base + g + 1 + late`` cycles after
#: dispatch, ``late`` the last step ``(slot, late)`` at or before ``g`` (0 before the first).
LateSteps = tuple[int, tuple[tuple[int, int], ...]]


def _late_at(steps: tuple[tuple[int, int], ...], g: int) -> int:
    late = 0
    for slot, value in steps:
        if slot > g:
            break
        late = value
    return late


def _prologue(params, instr: Instruction, preloaded: bool) -> int:
    """ws: cycles loading the first tile's weights before the first feed: ``rows`` on a
    compute whose feed may stall (streaming, following), else ``prologue_length`` (the rest
    load in the first tile's first slots)."""
    if params.dataflow == "os" or preloaded:
        return 0
    return params.rows if _feed_may_stall(instr) else prologue_length(params)


def feed_cycles(params, instr: Instruction, stall: int = 0, preloaded: bool = False) -> int:
    """Cycles from dispatch to the feeder's last busy cycle (the next dispatch's earliest)."""
    feed = _prologue(params, instr, preloaded) + stall \
        + instr.compute.array_tiles * tile_period(params, instr)
    return max(feed, _drain_latency(params))


def last_feed_cycles(params, instr: Instruction, stall: int = 0,
                     preloaded: bool = False) -> int:
    """Cycles from dispatch to the feed of the last tile's last element."""
    c = instr.compute
    return _prologue(params, instr, preloaded) + stall \
        + (c.array_tiles - 1) * tile_period(params, instr) + c.length


def drain_cycles(params, instr: Instruction, stall: int = 0, preloaded: bool = False,
                 tile: int | None = None) -> int:
    """Cycles from dispatch until the last row of sums of array tile ``tile`` (default: the
    last) is read for writing."""
    c = instr.compute
    last = c.array_tiles - 1 if tile is None else tile
    return _prologue(params, instr, preloaded) + stall + last * tile_period(params, instr) \
        + c.length + _drain_latency(params)


@dataclass
class BusState:
    """Absolute cycles from which the read and the write path take their next beat."""

    read_free: int = 0
    write_free: int = 0
    #: the last instruction's loads: absolute cycle of their last response (transient)
    loads_done: int = 0
    #: the previous instruction's A load still in flight (it was ``ahead``): its first
    #: request cycle, bursts and burst length (``follow_wait``); and its last response's cycle
    in_flight: tuple[int, int, int] | None = None
    in_flight_done: int = 0
    #: the same of this instruction if it is ahead (transient, set by dma_cycles; its last
    #: response is ``loads_done``)
    ahead: tuple[int, int, int] | None = None


def read_beats(params, instr: Instruction, issue: int) -> tuple[list[tuple[str, int, int]], int]:
    """A streaming instruction's read beats, A and B alternating from ``issue`` on (each
    channel's alone once the other has none left): ``[(channel, issue cycle, rows)]`` in
    order, and the cycle the read path is free again."""
    e = elem_bytes(params)
    queues: dict[str, list[tuple[str, int]]] = {}
    cpb: dict[str, int] = {}
    for name, t, row in (("a", instr.load_a, params.rows * e),
                         ("b", instr.load_b, params.cols * e)):
        per = rows_per_beat(row, params.bus_bytes)
        cpb[name] = cycles_per_beat(row, params.bus_bytes)
        burst = [] if t is None else [(name, min(per, t.length - j))
                                      for j in range(0, t.length, per)]
        queues[name] = burst * (0 if t is None else t.bursts)
    a, b = queues["a"], queues["b"]
    both = min(len(a), len(b))  # alternating while both have beats left, A first
    order = [beat for pair in zip(a[:both], b[:both], strict=True) for beat in pair] \
        + a[both:] + b[both:]
    schedule: list[tuple[str, int, int]] = []
    for name, rows in order:
        schedule.append((name, issue, rows))
        issue += cpb[name]
    return schedule, issue


def stream_wait(params, instr: Instruction, dispatch: int, stall: int,
                read_free: int) -> tuple[int, int | None, LateSteps | None]:
    """A streaming compute's wait for the rows its own loads write, on top of ``stall``, and
    (ws) the cycle its last tile's preload window opens. A row counts as written one cycle
    after its response. os: slot ``s`` of the single tile needs A and B row ``s``. ws: the
    (whole, ``rows``-cycle) prologue's slot ``r`` weight row ``r``; tile (k block) ``i``'s feed
    slot ``s`` A row
    ``i*length + s``, its window slot ``cols-1+r`` weight row ``(i+1)*rows + r`` (but the last
    tile's window, which loads the next compute's weights). ws: also the lateness steps of
    its tile slots (``LateSteps``, from the end of its ``rows``-cycle prologue)."""
    schedule, _ = read_beats(params, instr, max(dispatch + 1, read_free))
    seen: dict[str, list[int]] = {"a": [], "b": []}  # per row: the cycle it counts as written
    for name, issue, rows in schedule:
        seen[name] += [issue + params.mem_latency + 2] * rows
    c = instr.compute
    R, C, L = params.rows, params.cols, c.length
    t = dispatch + stall  # the cycle before the first slot
    if params.dataflow == "os":
        for s in range(L):
            t = max(t + 1, seen["a"][s], seen["b"][s])
        return t - (dispatch + stall + L), None, None
    period, tiles, window = tile_period(params, instr), c.array_tiles, None
    for r in range(R):
        t = max(t + 1, seen["b"][r])
    base = dispatch + stall + R
    steps: list[tuple[int, int]] = []
    for i in range(tiles):
        last = i == tiles - 1
        for slot in range(period):
            need = t + 1
            if slot < L:
                need = max(need, seen["a"][i * L + slot])
            if not last and C - 1 <= slot < C - 1 + R:
                need = max(need, seen["b"][(i + 1) * R + slot - (C - 1)])
            t = need
            g = i * period + slot
            late = t - (base + g + 1)
            if late > (steps[-1][1] if steps else 0):
                steps.append((g, late))
            if last and slot == C - 1:
                window = t
    return t - (base + tiles * period), window, (R, tuple(steps))


def follow_wait(params, instr: Instruction, dispatch: int, stall: int, preloaded: bool,
                flight: tuple[int, int, int]) -> tuple[int, int | None, LateSteps]:
    """A following compute's wait for the A rows of the previous (``ahead``) instruction's load,
    in the order it writes them, on top of ``stall``; and (ws) the cycle its last tile's
    preload window opens. ``flight``: that load's first request cycle, bursts and burst
    length. Its weight rows are all in the scratchpad. os: slot ``s`` of the single tile needs
    A row ``s``; ws: tile (k block) ``i``'s slot ``s`` A row ``i*length + s``.

    The slots form one in-order pipeline, a slot a cycle unless it waits for its row (which
    counts as written one cycle after its response), so slot ``k`` ends at ``start + k + 1``
    plus the largest lateness of a row needed at or before it; a beat's rows all arrive
    together, so only each beat's first row can be the latest: one step per beat. Also
    the steps of that lateness (``LateSteps``)."""
    c = instr.compute
    L = c.length
    prologue = _prologue(params, instr, preloaded)
    start = dispatch + stall + prologue
    os_flow = params.dataflow == "os"
    period, tiles = (L, 1) if os_flow else (tile_period(params, instr), c.array_tiles)
    needed = tiles * L
    window_slot = None if os_flow else (tiles - 1) * period + params.cols - 1
    row_bytes = params.rows * elem_bytes(params)
    per = rows_per_beat(row_bytes, params.bus_bytes)
    cpb = cycles_per_beat(row_bytes, params.bus_bytes)
    issue, bursts, length = flight
    late = late_window = 0
    steps: list[tuple[int, int]] = []
    for burst in range(bursts):
        for j in range(0, length, per):
            r = burst * length + j
            if r >= needed:
                break
            slot = (r // L) * period + r % L
            lateness = issue + params.mem_latency + 2 - (start + slot + 1)
            if lateness > late:
                steps.append((slot, lateness))
            late = max(late, lateness)
            if window_slot is not None and slot <= window_slot:
                late_window = max(late_window, lateness)
            issue += cpb
    window = None if window_slot is None else start + window_slot + 1 + late_window
    return late, window, (stall + prologue, tuple(steps))


def dma_cycles(params, instr: Instruction, dispatch: int, drain_ready: int | None,
               bus: BusState,
               tiles_drained: Callable[[int, bool, int, int], int] | None = None) -> int:
    """Cycles from dispatch to the DMA's last busy cycle (0 without transfers); advances ``bus``.

    ``drain_ready`` is the cycle (relative to dispatch) from which the previous instruction's
    sums are all in the scratchpad; ``tiles_drained(n, in_drain_order, cpb, length)`` the
    absolute cycle from which a burst of ``length`` rows (``cpb`` cycles each) waiting for the
    first ``n`` array tiles of the last compute may start (for stores with ``wait_first``).
    """
    e = elem_bytes(params)
    done = dispatch
    if instr.stream:
        schedule, end = read_beats(params, instr, max(dispatch + 1, bus.read_free))
        bus.read_free = end
        done = schedule[-1][1] + params.mem_latency + 1
        # the weights' last response (the beats alternate: not always the last one)
        bus.loads_done = max((issue for name, issue, _ in schedule if name == "b"),
                             default=schedule[-1][1]) + params.mem_latency + 1
    elif instr.load_a is not None or instr.load_b is not None:
        issue = max(dispatch + 1, bus.read_free)
        first_issue = issue
        for t, row in ((instr.load_a, params.rows * e), (instr.load_b, params.cols * e)):
            if t is not None:
                cpb = cycles_per_beat(row, params.bus_bytes)
                issue += beats(t, row, params.bus_bytes) * cpb
                last_cpb = cpb
        bus.read_free = issue
        done = bus.loads_done = issue - last_cpb + params.mem_latency + 1
        if instr.ahead:  # ends with its last request; the next instruction follows the rows
            assert instr.load_a is not None and instr.load_b is None
            done = issue - last_cpb
            bus.ahead = (first_issue, instr.load_a.bursts, instr.load_a.length)
    done = max(done, bus.in_flight_done)
    if instr.store_c is not None:
        t = instr.store_c
        cpb = cycles_per_beat(params.cols * out_bytes(params), params.bus_bytes)
        whole = dispatch + (drain_ready if drain_ready is not None else 0)
        fire = max(dispatch + 1, bus.write_free)  # the next row's earliest cycle
        for burst in range(t.bursts):
            ready = whole
            if t.wait_first and tiles_drained is not None:
                need = t.wait_first + burst * t.wait_step
                ready = min(whole, tiles_drained(need, t.in_drain_order, cpb, t.length))
            last = max(fire, ready) + (t.length - 1) * cpb
            fire = last + cpb
        bus.write_free = fire
        done = max(done, last + 1)
    return done - dispatch


def instruction_cycles(params, instr: Instruction, dispatch: int, drain_ready: int | None,
                       bus: BusState, stall: int = 0, preloaded: bool = False,
                       tiles_drained: Callable[[int, bool, int, int], int] | None = None
                       ) -> int:
    """Cycles of one instruction dispatched at ``dispatch`` (see dma_cycles)."""
    dma = dma_cycles(params, instr, dispatch, drain_ready, bus, tiles_drained)
    comp = 0 if instr.compute is None else feed_cycles(params, instr, stall, preloaded)
    return DISPATCH_CYCLES + max(dma, comp)


def preloads_next(params, instr: Instruction, dispatch: int, loads_done: int,
                  preloaded: bool, window: int | None = None) -> bool:
    """ws: whether the last tile of ``instr`` (dispatched at ``dispatch``) preloads the next
    compute's first weights: always with ``preload_next``; with ``preload_next_when_loaded``
    if its weight load is written when the window opens (slot ``cols-1`` of the last tile).
    ``loads_done``: the cycle of its loads' last response (``dma_cycles``; the B beats are
    requested after the A beats, so it is the weights'), written one cycle later. ``window``:
    the window's cycle where streaming waits moved it."""
    c = instr.compute
    if c is None or params.dataflow == "os":
        return False
    if instr.preload_next:
        return True
    if not instr.preload_next_when_loaded or instr.load_b is None:
        return False
    if window is None:
        window = dispatch + 1 + _prologue(params, instr, preloaded) \
            + (c.array_tiles - 1) * tile_period(params, instr) + params.cols - 1
    return loads_done + 1 <= window


def instruction_actions(params, instr: Instruction, totals: dict[str, int]) -> None:
    R, C = params.rows, params.cols
    e, o = elem_bytes(params), out_bytes(params)
    c = instr.compute
    if c is not None:
        fed = c.array_tiles * c.length
        totals["mac"] += fed * R * C
        totals["pe_reg_write"] += fed * R * C
        totals["ifmap_sram_read"] += fed * R
        if params.dataflow == "os":
            totals["weight_sram_read"] += fed * C
            outputs = c.array_tiles * R  # accumulator rows drained
            first_outputs = outputs if c.overwrite else 0
        else:
            totals["weight_sram_read"] += c.array_tiles * R * C
            totals["pe_reg_write"] += c.array_tiles * R * C
            outputs = c.array_tiles * c.length
            first_outputs = c.outer * c.length if c.overwrite else 0
        totals["acc_sram_write"] += outputs * C
        totals["acc_sram_read"] += (outputs - first_outputs) * C
    if instr.load_a is not None:
        totals["ifmap_sram_write"] += instr.load_a.rows * R
        totals["dram_read_bytes"] += instr.load_a.rows * R * e
    if instr.load_b is not None:
        totals["weight_sram_write"] += instr.load_b.rows * C
        totals["dram_read_bytes"] += instr.load_b.rows * C * e
    if instr.store_c is not None:
        totals["acc_sram_read"] += instr.store_c.rows * C
        totals["dram_write_bytes"] += instr.store_c.rows * C * o


def model_gemm(params, gemm: Gemm, mapping: Mapping) -> GemmRun:
    """Cycles and actions of ``gemm`` under ``mapping`` (fitted to the layer here)."""
    start = time.perf_counter()
    program = build_program(params, gemm, mapping.fit_to(params, gemm), compact=True)
    if program.cycles is None:
        cycles, totals = program_cycles(params, program.instructions, repeats=program.repeats)
    else:  # the builder walked the program it chose: only the actions are left to add up
        cycles = program.cycles
        totals = program_actions(params, program.instructions, program.repeats)
    return GemmRun(cycles=cycles, actions=totals, sim_s=time.perf_counter() - start)


@dataclass
class _Walk:
    """Where the walk of a program stands at an instruction's dispatch (absolute cycles)."""

    cycles: int = START_CYCLES
    drain_done: int | None = None  # the last dispatched compute is drained
    last_fed: int | None = None    # the last tile's last element was fed
    preloaded: bool = False        # ws: the previous instruction preloaded this one's weights
    bus: BusState = field(default_factory=BusState)
    #: the last computing instruction, its dispatch, feed stall and whether it was preloaded
    #: (store waits)
    last_compute: tuple[Instruction, int, int, bool] | None = None
    #: ws: where the last compute fed its slots, if its feed stalled between them (streaming,
    #: following): its tiles' rows then drain with gaps, and a store follows them row by row
    last_slots: LateSteps | None = None

    def tiles_drained(self, params) -> Callable[[int, bool, int, int], int] | None:
        """``(n, in_drain_order, cpb, length) ->`` the absolute cycle from which a store burst
        of ``length`` rows, ``cpb`` cycles each, waiting for ``n`` tiles of the last compute
        may start: when the drain's tile count (seen by the store engine one cycle late) shows
        them written; ws, and os stores in drain order, already when the first row of tile
        ``n`` is (the drain writes a tile's rows one per cycle, so the burst's later rows never
        overtake it), or, after a ws compute whose feed stalled between slots, when no later
        row of the burst would have to wait for its own."""
        if self.last_compute is None:
            return None
        instr, dispatch, stall, preloaded = self.last_compute
        rows_before_last = params.rows - 1 if params.dataflow == "os" \
            else instr.compute.length - 1

        slots = self.last_slots if params.dataflow == "ws" else None

        def ready(n: int, in_drain_order: bool, cpb: int, length: int) -> int:
            follow = in_drain_order or params.dataflow == "ws"
            if slots is None or not follow:
                return dispatch + drain_cycles(params, instr, stall, preloaded, tile=n - 1) \
                    + 2 - (rows_before_last if follow else 0)
            # row j of tile n-1 is written (and seen) _drain_latency + 2 cycles after its slot
            # ends; the burst's row j goes out no earlier, and cpb cycles after row j-1: the
            # first row's earliest cycle is the largest of (row j seen - j * cpb), found at a
            # row where the lateness steps (a row per cycle in between, cpb >= 1)
            base, steps = slots
            first = (n - 1) * tile_period(params, instr)
            rows = min(length, instr.compute.length)
            at = {0} | {g - first for g, _ in steps if first < g < first + rows}
            return max(dispatch + base + first + j + 1 + _late_at(steps, first + j)
                       + _drain_latency(params) + 2 - j * cpb for j in at)
        return ready

    def copy(self, delta: int = 0) -> _Walk:
        def move(x: int | None) -> int | None:
            return None if x is None else x + delta
        last = None
        if self.last_compute is not None:
            instr, dispatch, stall, preloaded = self.last_compute
            last = (instr, dispatch + delta, stall, preloaded)
        bus = BusState(self.bus.read_free + delta, self.bus.write_free + delta)
        if self.bus.in_flight is not None:
            issue, bursts, length = self.bus.in_flight
            bus.in_flight = (issue + delta, bursts, length)
            bus.in_flight_done = self.bus.in_flight_done + delta
        return _Walk(self.cycles + delta, move(self.drain_done), move(self.last_fed),
                     self.preloaded, bus, last, self.last_slots)

    def key(self, params) -> tuple:
        """The state relative to the dispatch, with values that act alike merged: the
        instructions from here on take the same cycles for equal keys."""
        d = self.cycles
        drain = -1 if self.drain_done is None else max(self.drain_done - d, -1)
        fed = 0
        if params.dataflow == "os":  # a feed stall needs the last feed < rows-1 cycles ago
            fed = -(params.rows - 1) if self.last_fed is None \
                else max(self.last_fed - d, -(params.rows - 1))
        last = None  # matters to a store only while the last compute still drains
        if self.last_compute is not None and drain >= 0:
            instr, dispatch, stall, preloaded = self.last_compute
            c = instr.compute
            last = (c.outer, c.inner, c.length, tile_period(params, instr), dispatch - d,
                    stall, preloaded, self.last_slots)
        flight = None
        if self.bus.in_flight is not None:
            issue, bursts, length = self.bus.in_flight
            flight = (issue - d, bursts, length, self.bus.in_flight_done - d)
        return (drain, fed, self.preloaded, max(self.bus.read_free - d, 1),
                max(self.bus.write_free - d, 1), last, flight)


def _step(params, instr: Instruction, w: _Walk) -> None:
    """Dispatch ``instr`` at ``w.cycles`` and advance ``w`` to the next dispatch."""
    dispatch = w.cycles
    # the drain-completion count is visible two cycles after the last read-for-write
    ready = None if w.drain_done is None else w.drain_done + 2 - dispatch
    stall = 0
    window = None
    waits = instr.store_c is not None and instr.store_c.wait_first
    drained_before = w.tiles_drained(params) if waits else None
    if instr.compute is not None:
        stall = feed_stall(params, instr.compute,
                           None if w.last_fed is None else dispatch - w.last_fed)
        slots = None
        if instr.stream:
            extra, window, slots = stream_wait(params, instr, dispatch, stall,
                                               w.bus.read_free)
            stall += extra
        elif instr.follow:
            assert w.bus.in_flight is not None
            extra, window, slots = follow_wait(params, instr, dispatch, stall, w.preloaded,
                                               w.bus.in_flight)
            stall += extra
        w.last_slots = slots
        w.drain_done = dispatch + drain_cycles(params, instr, stall, w.preloaded)
        w.last_fed = dispatch + last_feed_cycles(params, instr, stall, w.preloaded)
        w.last_compute = (instr, dispatch, stall, w.preloaded)
    w.bus.ahead = None
    w.cycles += instruction_cycles(params, instr, dispatch, ready, w.bus, stall, w.preloaded,
                                   drained_before)
    w.bus.in_flight = w.bus.ahead
    w.bus.in_flight_done = 0 if w.bus.ahead is None else w.bus.loads_done
    w.preloaded = preloads_next(params, instr, dispatch, w.bus.loads_done, w.preloaded,
                                window)


def timing_shape(instr: Instruction) -> tuple:
    """What an instruction's timing depends on: its sizes, waits and flags, not its
    addresses. Instructions of equal shape dispatched in equal walk states (``_Walk.key``)
    take the same cycles and leave equal states."""
    c, a, b, s = instr.compute, instr.load_a, instr.load_b, instr.store_c
    return (None if c is None else (c.outer, c.inner, c.length),
            None if a is None else (a.bursts, a.length),
            None if b is None else (b.bursts, b.length),
            None if s is None else (s.bursts, s.length, s.wait_first, s.wait_step,
                                    s.in_drain_order),
            instr.preload_next, instr.preload_next_when_loaded, instr.stream, instr.ahead,
            instr.follow)


class WalkTrace:
    """The walk's state at every dispatch of a program (for ``spliced_cycles``). States the
    walk jumped over are kept as (earlier index, cycle shift) and made on demand."""

    def __init__(self) -> None:
        self._items: list[_Walk | tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> _Walk:
        item = self._items[index]
        if isinstance(item, _Walk):
            return item
        source, delta = item
        return self[source].copy(delta)

    def append(self, state: _Walk) -> None:
        self._items.append(state)

    def repeat(self, start: int, count: int, delta: int) -> None:
        """Append the states ``start .. start+count-1`` again, ``delta`` cycles later."""
        self._items.extend((start + t, delta) for t in range(count))


@dataclass(frozen=True)
class Loop:
    """A repeat of a compact program as the walk sees it: ``body`` (instructions and loops)
    ``times`` in a row."""

    body: tuple[Instruction | Loop, ...]
    times: int

    # made on first use: a program choice makes loops it never walks
    @functools.cached_property
    def shape(self) -> tuple:
        """What its timing depends on (``timing_shape`` of each instruction of its body)."""
        return ("loop", self.times, tuple(_shape(x) for x in self.body))

    @functools.cached_property
    def ids(self) -> list[int]:
        """``_walk``'s shape numbers of its body (walked once per copy until it settles)."""
        return _shape_ids(self.body)


def _shape(item: Instruction | Loop) -> tuple:
    return item.shape if isinstance(item, Loop) else timing_shape(item)


def _shape_ids(items: list | tuple) -> list[int]:
    """Items numbered by shape: equal numbers, equal shapes."""
    shapes: dict[tuple, int] = {}
    return [shapes.setdefault(_shape(item), len(shapes)) for item in items]


def program_items(instructions: list, repeats: tuple[Repeat, ...] = ()
                  ) -> list[Instruction | Loop]:
    """The program as the walk takes it: ``instructions``, each of a compact program's
    repeats as one ``Loop``."""
    if not repeats:
        return instructions
    inside = nested_repeats(repeats)

    def items(lo: int, hi: int, kids: list[Repeat]) -> list[Instruction | Loop]:
        out: list[Instruction | Loop] = []
        j = lo
        for r in kids:
            out += instructions[j:r.start]
            out.append(Loop(tuple(items(r.start, r.stop, inside[r])), r.times))
            j = r.stop
        return out + instructions[j:hi]

    return items(0, len(instructions), inside[None])


def _advance(params, item: Instruction | Loop, w: _Walk) -> _Walk:
    """The walk after ``item`` dispatched in state ``w`` (advanced in place, or a new state).

    A loop's copies are equal, so a copy that starts in a state (relative to its dispatch) an
    earlier copy started in repeats the walk of the copies from that one on, shifted in
    time: the walk jumps over as many whole such periods as the loop has left. Time grows
    with the copies a loop takes to settle, not with its ``times``."""
    if not isinstance(item, Loop):
        _step(params, item, w)
        return w
    seen: dict[tuple, tuple[int, int]] = {}
    done = 0
    while done < item.times:
        key = w.key(params)
        if key in seen:
            first, cycles = seen[key]
            jumps = (item.times - done) // (done - first)
            if jumps:
                w = w.copy(jumps * (w.cycles - cycles))
                done += jumps * (done - first)
                seen.clear()
                continue
        seen[key] = (done, w.cycles)
        w = _walk(params, item.body, WalkTrace(), w, item.ids)
        done += 1
    return w


def _walk(params, items: list | tuple, trace: WalkTrace, w: _Walk | None = None,
          ids: list[int] | None = None) -> _Walk:
    """The walk of ``items`` (instructions and loops, ``program_items``; ``ids``: their
    ``_shape_ids`` if known) from state ``w`` (the start), every state at an item's dispatch
    recorded in ``trace``; returns the state after the last item.

    A tiled program repeats itself: when an item meets a state (relative to its dispatch) an
    earlier item of the same shape met, the items from there on repeat the walk from the
    earlier one, shifted in time, for as long as their shapes match (at most up to where the
    walk stands). The walk jumps over such runs, and since the first index of a state is
    remembered, the runs it jumps double in length.
    """
    ids = _shape_ids(items) if ids is None else ids
    first_index: dict[tuple, int] = {}
    w = _Walk() if w is None else w
    j, n = 0, len(items)
    while j < n:
        i = first_index.setdefault((ids[j], w.key(params)), j)
        if i == j:
            trace.append(w.copy())
            w = _advance(params, items[j], w)
            j += 1
            continue
        span = min(j - i, n - j)
        if ids[i:i + span] == ids[j:j + span]:
            count = span
        else:
            count = next(t for t in range(span) if ids[i + t] != ids[j + t])
        delta = w.cycles - trace[i].cycles
        trace.repeat(i, count, delta)
        w = trace[i + count].copy(delta)  # i + count <= j: already in the trace
        j += count
    return w


def _action_shape(instr: Instruction) -> tuple:
    """What an instruction's action counts depend on."""
    c, a, b, s = instr.compute, instr.load_a, instr.load_b, instr.store_c
    return (None if c is None else (c.outer, c.inner, c.length, c.overwrite),
            None if a is None else a.rows, None if b is None else b.rows,
            None if s is None else s.rows)


def program_actions(params, instructions: list,
                    repeats: tuple[Repeat, ...] = ()) -> dict[str, int]:
    """Action counts of running ``instructions`` (a compact program with ``repeats``): each
    distinct shape counted once, times its number of instructions."""
    groups: dict[tuple, list] = {}
    counts = multiplicities(len(instructions), repeats) if repeats else None
    for j, instr in enumerate(instructions):
        group = groups.setdefault(_action_shape(instr), [instr, 0])
        group[1] += 1 if counts is None else counts[j]
    totals = dict.fromkeys(ACTIONS, 0)
    for instr, count in groups.values():
        one = dict.fromkeys(ACTIONS, 0)
        instruction_actions(params, instr, one)
        for name, value in one.items():
            totals[name] += value * count
    return totals


def program_cycles(params, instructions: list, *, actions: bool = True,
                   trace: WalkTrace | None = None,
                   repeats: tuple[Repeat, ...] = ()) -> tuple[int, dict[str, int]]:
    """Cycles from start to done, and action counts (all zero with ``actions=False``, which
    program choices that only compare cycles use), of running ``instructions`` (a compact
    program with ``repeats``). ``trace`` receives the walk's state at every dispatch of an
    item (``program_items``; for ``spliced_cycles``)."""
    totals = program_actions(params, instructions, repeats) if actions \
        else dict.fromkeys(ACTIONS, 0)
    if not instructions:
        return 0, totals
    w = _walk(params, program_items(instructions, repeats),
              trace if trace is not None else WalkTrace())
    return w.cycles + DONE_CYCLES, totals


#: Shared items ``spliced_cycles`` tries to meet the other walk at before it walks the rest
#: on its own (the walks meet within two items on nearly every program).
_SPLICE_TRIES = 8


def spliced_cycles(params, program: list, head: int, middle: int, plain_trace: WalkTrace,
                   plain_start: int = 2) -> int:
    """Cycles of ``program`` (items, ``program_items``), whose items ``head .. head+middle-1``
    are those of another program from ``plain_start`` on, walked with ``plain_trace``
    (``program_cycles(trace=)``).

    Exactly ``program_cycles(params, program)[0]``, faster: once the walk reaches a shared
    instruction in a state (relative to its dispatch) the other walk had there, the rest of
    the shared run repeats that walk shifted in time, so it jumps to the end of the run. The
    parts before and after (and the shared run, if the walks do not meet soon) are walked
    with ``_walk``'s jumps.
    """
    w = _walk(params, program[:head], WalkTrace())
    j = head
    while j < head + min(middle, _SPLICE_TRIES):
        ref = plain_trace[plain_start + j - head]
        if w.key(params) == ref.key(params):
            w = plain_trace[plain_start + middle].copy(w.cycles - ref.cycles)
            j = head + middle
            break
        w = _advance(params, program[j], w)
        j += 1
    return _walk(params, program[j:], WalkTrace(), w).cycles + DONE_CYCLES
