"""The systolic-array accelerator: controller, compute engine, scratchpads, DMA and counters.

The controller dispatches instructions (see ``hwloop.sim.systolic.program``) one at a time to
the compute engine and the DMA engine, which run them in parallel; the next instruction is
prefetched meanwhile and dispatched in the last cycle of the engines' work, so instructions
follow each other without a gap. Scratchpads are
double-buffered by the program (it alternates halves), so DMA fills one half while the array
reads the other.

External memory has three row-wide channels (A rows of ``rows`` inputs, B rows of ``cols``
weights, C rows of ``cols`` sums, or with ``out_bits`` of ``cols`` outputs requantized on their
way out) on a bus with separate read and write data paths of ``bus_bytes`` each, like AXI: A
and B share the read path (the A beats of an instruction, then its B beats, requests back to
back while responses return ``mem_latency + 1`` cycles later; a streaming instruction
alternates A and B beats), C stores use the write path at the same time. A read beat carries
as many whole rows as fit in ``bus_bytes`` (one write port per row of a beat), and a beat (or
a stored row, ``cols * out_bytes`` bytes) takes ``ceil(row bytes / bus_bytes)`` cycles. The
drain of an instruction's last array tiles overlaps the next instruction; a store waits until
the sums it reads are written. With ``read_ahead``, an instruction marked ahead (A loads only)
ends with its last A request; the next one computes on those rows as they are written (see the
DMA engine).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwloop.hdl.systolic.mesh import OsMesh, WsMesh
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.mapping import (
    elem_bytes,
    out_bytes,
    out_field_bits,
    scratchpad_geometry,
)
from hwloop.sim.systolic.program import (
    FIELD_BITS,
    FIELDS,
    INSTRUCTION_BITS,
    cycles_per_beat,
    prologue_length,
    rows_per_beat,
)

ADDR_BITS = FIELD_BITS


def feeder_guard(params: SystolicParams) -> int:
    """Cycles the feeder stays busy per instruction at least: as long as the drain of the
    last element fed before the instruction (os: skew, mesh, shift-out 2*rows + cols; ws: skew,
    mesh, deskew rows + cols), so at most one instruction's drain is ever outstanding when the
    next one is dispatched."""
    R, C = params.rows, params.cols
    return 2 * R + C if params.dataflow == "os" else R + C


COUNTER_BITS = 64

#: Hardware event counters (``cnt_<name>`` ports), the same names as the model's actions.
COUNTERS: tuple[str, ...] = (
    "cycles", "mac", "ifmap_sram_read", "ifmap_sram_write", "weight_sram_read",
    "weight_sram_write", "acc_sram_read", "acc_sram_write", "dram_read_bytes",
    "dram_write_bytes", "pe_reg_write",
)


class _Walker:
    """A 2-D address walker: ``bursts`` bursts of ``length`` rows (external and scratchpad)."""

    def __init__(self, m: Module, name: str, *, reverse=None):
        self.ext = Signal(ADDR_BITS, name=f"{name}_ext")
        self.spad = Signal(ADDR_BITS, name=f"{name}_spad")
        self.ext_stride = Signal(ADDR_BITS, name=f"{name}_ext_stride")
        self.spad_stride = Signal(ADDR_BITS, name=f"{name}_spad_stride")
        self.length = Signal(ADDR_BITS, name=f"{name}_length")
        self.elem = Signal(ADDR_BITS, name=f"{name}_elem")
        self.ext_base = Signal(ADDR_BITS, name=f"{name}_ext_base")
        self.spad_base = Signal(ADDR_BITS, name=f"{name}_spad_base")
        self.left = Signal(ADDR_BITS, name=f"{name}_left")  # rows still to walk
        self._m = m
        # ``reverse``: each burst's rows are walked last row first. Differences are cut back to
        # unsigned ADDR_BITS (Amaranth's ``a - b`` is signed and one bit wider): the sums below
        # wrap at ADDR_BITS anyway, and signed 33-bit arithmetic made the simulated model
        # sign-extend in 64 bits on every cycle.
        offset = self.elem if reverse is None else Mux(
            reverse, (self.length - 1 - self.elem)[:ADDR_BITS], self.elem)
        m.d.comb += [self.ext.eq(self.ext_base + offset), self.spad.eq(self.spad_base + offset)]

    def load(self, fields: dict, prefix: str) -> list:
        f = fields
        return [self.ext_base.eq(f[f"{prefix}_ext_base"]),
                self.spad_base.eq(f[f"{prefix}_spad_base"]),
                self.ext_stride.eq(f[f"{prefix}_ext_stride"]),
                self.spad_stride.eq(f[f"{prefix}_spad_stride"]),
                self.length.eq(f[f"{prefix}_length"]),
                self.elem.eq(0),
                self.left.eq(f[f"{prefix}_bursts"] * f[f"{prefix}_length"])]

    def load_spad(self, spad_base, spad_stride, length, left) -> list:
        """The scratchpad side of a transfer (a response walker's: no external addresses),
        ``left`` rows in all."""
        return [self.spad_base.eq(spad_base), self.spad_stride.eq(spad_stride),
                self.length.eq(length), self.elem.eq(0), self.left.eq(left)]

    def rows_now(self, per_beat: int):
        """Rows the next beat moves: ``per_beat``, or what is left of the burst."""
        rest = (self.length - self.elem)[:ADDR_BITS]  # elem < length while rows are left
        return Mux(rest > per_beat, per_beat, rest)

    def step(self, per_beat: int = 1) -> None:
        m = self._m
        n = self.rows_now(per_beat)
        m.d.sync += self.left.eq(self.left - n)
        with m.If(self.elem + n == self.length):
            m.d.sync += [self.elem.eq(0), self.ext_base.eq(self.ext_base + self.ext_stride),
                         self.spad_base.eq(self.spad_base + self.spad_stride)]
        with m.Else():
            m.d.sync += self.elem.eq(self.elem + n)


class SystolicAccelerator(wiring.Component):
    def __init__(self, *, params: SystolicParams):
        self._p = params
        R, C = params.rows, params.cols
        e = elem_bytes(params)
        self._beat_a = rows_per_beat(R * e, params.bus_bytes)
        self._beat_b = rows_per_beat(C * e, params.bus_bytes)
        sig = {
            "start": In(1),
            "n_instr": In(ADDR_BITS),
            "busy": Out(1),
            "done": Out(1),
            "instr_addr": Out(ADDR_BITS),
            "instr_data": In(INSTRUCTION_BITS),
            "a_req_valid": Out(1),
            "a_req_addr": Out(ADDR_BITS),
            "a_resp_valid": In(1),
            "a_resp_data": In(self._beat_a * R * params.in_bits),
            "b_req_valid": Out(1),
            "b_req_addr": Out(ADDR_BITS),
            "b_resp_valid": In(1),
            "b_resp_data": In(self._beat_b * C * params.in_bits),
            "c_wr_valid": Out(1),
            "c_wr_addr": Out(ADDR_BITS),
            "c_wr_data": Out(C * out_field_bits(params)),
        }
        for name in COUNTERS:
            sig[f"cnt_{name}"] = Out(COUNTER_BITS)
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        p = self._p
        R, C = p.rows, p.cols
        os_flow = p.dataflow == "os"
        ahead = p.read_ahead
        geo = scratchpad_geometry(p)
        e, ob = elem_bytes(p), out_bytes(p)

        # ``instr_data`` holds an instruction in the cycle it is dispatched (``go``), when every
        # engine latches what it needs; afterwards it holds the prefetched next instruction
        fields = {name: self.instr_data.word_select(i, FIELD_BITS) for i, name in
                  enumerate(FIELDS)}
        flags = fields["flags"]

        # ---- scratchpads -------------------------------------------------------------------
        m.submodules.ifmap = ifmap = Memory(shape=unsigned(R * p.in_bits),
                                            depth=geo.ifmap_rows, init=[])
        m.submodules.weight = weight = Memory(shape=unsigned(C * p.in_bits),
                                              depth=geo.weight_rows, init=[])
        m.submodules.accs = accs = Memory(shape=unsigned(C * p.acc_bits),
                                          depth=geo.acc_rows, init=[])
        # one write port per row of a bus beat, so the DMA can fill the bus
        ifmap_ws = [ifmap.write_port() for _ in range(self._beat_a)]
        weight_ws = [weight.write_port() for _ in range(self._beat_b)]
        ifmap_r, weight_r = ifmap.read_port(), weight.read_port()
        # os with one row: a tile of one k step may drain in the cycle after the previous
        # instruction's last tile wrote the same sums (the spacing rule only keeps the two
        # tiles' shift-outs apart, one cycle on one row); the drain's read then sees that write.
        # No other design drains the same row in consecutive cycles (os tiles drain at least
        # rows cycles apart, ws tiles at least two), so their Verilog is unchanged.
        if os_flow and R == 1:
            acc_w, acc_r, acc_s = ((w := accs.write_port()), accs.read_port(transparent_for=(w,)),
                                   accs.read_port())
        else:
            acc_w, acc_r, acc_s = accs.write_port(), accs.read_port(), accs.read_port()

        # ---- counters ----------------------------------------------------------------------
        counters = {name: Signal(COUNTER_BITS, name=f"count_{name}") for name in COUNTERS}
        for name in COUNTERS:
            m.d.comb += getattr(self, f"cnt_{name}").eq(counters[name])
        bumps: dict[str, list] = {name: [] for name in COUNTERS}

        def bump(name: str, cond, amount) -> None:
            bumps[name].append((cond, amount))

        # ---- controller --------------------------------------------------------------------
        # FETCH reads instruction 0; then an instruction is dispatched (``go``) in the last
        # cycle of the previous one, when both engines finish their work in this cycle (or have
        # none left), while the instruction memory already reads the next one (its address is
        # ``pc + 1`` in the dispatch cycle): instructions follow each other without a gap.
        go = Signal()
        comp_ends = Signal()  # the compute engine is idle from the next cycle on
        dma_ends = Signal()   # the DMA engines are idle from the next cycle on
        pc = Signal(ADDR_BITS)  # the next instruction to dispatch
        m.d.comb += self.instr_addr.eq(Mux(go, pc + 1, pc))
        clear = Signal()
        running = Signal()
        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += clear.eq(1)
                    m.d.sync += [pc.eq(0), self.done.eq(0)]
                    with m.If(self.n_instr == 0):
                        m.d.sync += self.done.eq(1)
                    with m.Else():
                        m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += running.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                with m.If(comp_ends & dma_ends):
                    with m.If(pc == self.n_instr):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += go.eq(1)
                        m.d.sync += pc.eq(pc + 1)
        m.d.comb += self.busy.eq(running)
        bump("cycles", running, 1)

        # ---- compute engine: feeder --------------------------------------------------------
        c_outer = Signal(ADDR_BITS)
        c_inner = Signal(ADDR_BITS)
        c_len = Signal(ADDR_BITS)
        c_period = Signal(ADDR_BITS)
        c_b_base = Signal(ADDR_BITS)
        c_a_base = Signal(ADDR_BITS)
        tiles = Signal(ADDR_BITS)
        feeding = Signal()
        prologue = Signal()
        weights_ready = Signal()  # ws: the next compute's first weights are already preloaded
        weights_loaded = Signal()  # ws: the weight rows this instruction's DMA loads are written
        slot = Signal(ADDR_BITS)      # cycle within the array tile's period
        fed = Signal(ADDR_BITS)       # array tiles started
        guard = Signal(ADDR_BITS)     # keeps the feeder busy for at least GUARD cycles
        o_idx = Signal(ADDR_BITS)
        i_idx = Signal(ADDR_BITS)
        a_tile = Signal(ADDR_BITS)    # scratchpad row of the current tile's first A row
        b_tile = Signal(ADDR_BITS)
        feed_valid = Signal()
        feed_first = Signal()
        feed_last = Signal()
        # os: an instruction's first tile must end at least ``rows`` cycles after the previous
        # tile ended, or its sums would reach the shadow registers before the previous tile's
        # column shift-out is done (inside an instruction the period guarantees it)
        since_last = Signal(16, init=0xFFFF)  # cycles since the last element of a tile was fed
        spacing_wait = Signal()
        holding = Signal()
        if os_flow:
            m.d.comb += holding.eq(spacing_wait & (since_last + c_len <= R))
        # streaming (flag bit 8): the compute reads rows this instruction's own loads write,
        # so a slot waits (does not advance, feeds and preloads nothing) until its rows are in
        c_stream = Signal()
        a_seen = Signal(ADDR_BITS)  # A/B rows this instruction's loads have written so far
        b_seen = Signal(ADDR_BITS)
        # following (flag bit 10): the compute reads the A rows the previous (ahead)
        # instruction's load writes, which may still be arriving: the same per-row wait
        c_follow = Signal()
        a_seen_prev = Signal(ADDR_BITS)  # A rows the previous instruction's load has written
        starving = Signal()
        if os_flow:  # the tile's A and B rows are the first of each load
            waits = c_stream & (slot < c_len) & ((a_seen <= slot) | (b_seen <= slot))
            if ahead:
                waits |= c_follow & (slot < c_len) & (a_seen_prev <= slot)
            m.d.comb += starving.eq(waits)
        m.d.comb += [feed_valid.eq(feeding & ~prologue & ~holding & ~starving & (slot < c_len)),
                     feed_first.eq(slot == 0), feed_last.eq(slot + 1 == c_len)]
        with m.If(feed_valid & feed_last):
            m.d.sync += since_last.eq(1)
        with m.Elif(since_last != 0xFFFF):
            m.d.sync += since_last.eq(since_last + 1)
        with m.If(feeding & ~holding):
            m.d.sync += spacing_wait.eq(0)

        start_compute = Signal()
        m.d.comb += start_compute.eq(go & flags[0])
        # ws: the next compute's first weights are in the array, from this cycle on (then it
        # starts without a prologue)
        preloaded = Signal()
        tiles_n = fields["c_outer"] * fields["c_inner"]
        length = fields["c_length"]

        def at_least(floor: int):
            return Mux(length > floor, length, floor)
        if os_flow:
            period = at_least(R)
        else:
            # a tile's weight window (rows cycles from its slot cols-1) may run into the next
            # tile, or the next compute, when no feed stalls (those would delay the window's
            # last rows past the next tile's switch): not on a streaming compute
            short, long = at_least(max(R, C, 2)), at_least(max(R + C - 1, 2))
            period = Mux(flags[8] | flags[10] if ahead else flags[8], long, short)
        with m.If(start_compute):
            m.d.sync += [
                c_outer.eq(fields["c_outer"]), c_inner.eq(fields["c_inner"]),
                c_len.eq(length), c_period.eq(period), spacing_wait.eq(1),
                c_a_base.eq(fields["c_a_base"]), c_b_base.eq(fields["c_b_base"]),
                tiles.eq(tiles_n), feeding.eq(1),
                prologue.eq(0 if os_flow else ~preloaded),
                slot.eq(0), fed.eq(0), o_idx.eq(0), i_idx.eq(0),
                a_tile.eq(fields["c_a_base"]), b_tile.eq(fields["c_b_base"]),
                guard.eq(feeder_guard(p)), c_stream.eq(flags[8]),
            ]
            if ahead:
                m.d.sync += c_follow.eq(flags[10])
        with m.Elif(guard != 0):
            m.d.sync += guard.eq(guard - 1)
        # the controller waits for the feeder only: the drain of an instruction's last tiles
        # overlaps the next instruction (the guard keeps at most one drain outstanding). The
        # feeder ends in the last cycle of the last tile's period (no stall in it).
        last_tile = fed + 1 == tiles
        ends_feeding = ~holding & ~starving & ~prologue & (slot + 1 == c_period) & last_tile
        m.d.comb += comp_ends.eq((guard <= 1) & (~feeding | ends_feeding))

        # scratchpad reads for the stream
        if os_flow:
            m.d.comb += [ifmap_r.addr.eq(a_tile + slot), weight_r.addr.eq(b_tile + slot)]
        else:
            m.d.comb += ifmap_r.addr.eq(a_tile + slot)

        # WS weight preload: tile 0 in a prologue (``prologue_length``: one cycle on arrays
        # with at least as many columns as rows) and its first slots; tile j+1 in a window
        # of ``rows`` cycles from slot cols-1 of tile j (next weights are free once tile j
        # switched, and row r must be written before tile j+1 switches at PE(r, 0): a period
        # of at least max(rows, cols) cycles). With the preload flag (set by the program only
        # when those weight rows are already in the scratchpad) the last tile's window loads
        # the next compute's first tile, from the b base of the prefetched next instruction
        # (kept: the window may run on past the next dispatch), and that compute starts
        # without prologue.
        wl_issue = Signal()
        wl_row = Signal(range(max(R, 2)))
        # The prologue overlaps the first tile: PE row r needs its weight only when the first
        # A row reaches it, r cycles after the feed starts, so row r >= prologue_cycles loads
        # in the tile's slot r - prologue_cycles (written just in time, as the switch passes);
        # those slots end before the tile's window opens at slot cols-1. Not on a compute whose
        # feed may stall (streaming, following): slot 0's A runs on through the skew while a
        # later slot waits, so its prologue keeps ``rows`` cycles.
        prologue_cycles = prologue_length(p)
        pro_on = Signal()  # the prologue's rows that load in the first tile
        pro_row = Signal.like(wl_row)
        pro_short = ~(c_stream | c_follow) if ahead else ~c_stream  # its feed cannot stall
        wl_base = Signal(ADDR_BITS)  # weight rows of the next tile to preload
        if not os_flow:
            # bit 5: preload; bit 6: preload if this instruction's weight load (which writes
            # those rows) is complete when the window opens
            c_preload = Signal()
            c_preload_loaded = Signal()
            with m.If(start_compute):
                m.d.sync += [wl_base.eq(fields["c_b_base"] + Mux(preloaded, R, 0)),
                             c_preload.eq(flags[5]), c_preload_loaded.eq(flags[6]),
                             weights_ready.eq(0)]
            w_on = Signal()       # a window is past its first row
            w_row = Signal.like(wl_row)  # its next row
            w_cross = Signal()    # it preloads the next compute
            w_base = Signal(ADDR_BITS)  # its weight rows
            cross_now = c_preload | (c_preload_loaded & weights_loaded)
            opens = feeding & ~prologue & (slot == C - 1) & (~last_tile | cross_now)
            cross = Signal()
            m.d.comb += cross.eq(Mux(w_on, w_cross, ~prologue & ~pro_on & last_tile))
            with m.If(feeding & prologue):
                m.d.comb += [wl_issue.eq(1), wl_row.eq(slot)]
            with m.Elif(pro_on):
                m.d.comb += [wl_issue.eq(1), wl_row.eq(pro_row)]
            with m.Elif(w_on):
                m.d.comb += [wl_issue.eq(1), wl_row.eq(w_row)]
            with m.Elif(opens):
                m.d.comb += [wl_issue.eq(1), wl_row.eq(0)]
            base = Mux(w_on, w_base, Mux(cross, fields["c_b_base"], wl_base))
            m.d.comb += weight_r.addr.eq(base + wl_row)
            # streaming: weight rows of this compute (prologue, windows but the crossing one)
            # and A rows of its k blocks, in the order its loads write them
            waits = c_stream & (
                (wl_issue & ~cross & (b_seen <= wl_base - c_b_base + wl_row))
                | (~prologue & (slot < c_len) & (a_seen <= a_tile - c_a_base + slot)))
            if ahead:
                waits |= c_follow & ~prologue & (slot < c_len) & (
                    a_seen_prev <= a_tile - c_a_base + slot)
            m.d.comb += starving.eq(waits)
            window_row = ~prologue & ~pro_on & wl_issue & ~starving
            with m.If(pro_on & ~starving):  # in step with the first tile's slots
                m.d.sync += pro_row.eq(pro_row + 1)
                with m.If(pro_row == R - 1):
                    m.d.sync += pro_on.eq(0)
            with m.If(window_row):
                m.d.sync += [w_on.eq(wl_row != R - 1), w_row.eq(wl_row + 1), w_cross.eq(cross),
                             w_base.eq(base)]
            # a crossing window is certain to end once its first row is issued (it waits for
            # nothing but a streaming compute's A rows, and then ends in its own tile)
            opening = window_row & ~w_on
            m.d.comb += preloaded.eq(weights_ready | (opening & cross))
            with m.If(opening & cross & ~start_compute):
                m.d.sync += weights_ready.eq(1)
            # after the prologue's or a window's last row: the next tile's weights
            with m.If(wl_issue & ~starving & ~cross & (wl_row == R - 1) & ~start_compute):
                m.d.sync += wl_base.eq(wl_base + R)
            with m.If(clear):
                m.d.sync += weights_ready.eq(0)
            bump("weight_sram_read", wl_issue & ~starving, C)
            bump("pe_reg_write", wl_issue & ~starving, C)

        # (a dispatch in the last cycle of the last tile starts the next compute instead)
        with m.If(feeding & ~holding & ~starving & ~start_compute):
            with m.If(prologue):
                with m.If(Mux(pro_short, slot == prologue_cycles - 1, slot == R - 1)):
                    m.d.sync += [prologue.eq(0), slot.eq(0)]
                    if prologue_cycles < R:
                        m.d.sync += [pro_on.eq(pro_short), pro_row.eq(prologue_cycles)]
                with m.Else():
                    m.d.sync += slot.eq(slot + 1)
            with m.Elif(slot + 1 == c_period):
                m.d.sync += [slot.eq(0), fed.eq(fed + 1)]
                with m.If(fed + 1 == tiles):
                    m.d.sync += feeding.eq(0)
                last_inner = i_idx + 1 == c_inner
                m.d.sync += i_idx.eq(Mux(last_inner, 0, i_idx + 1))
                with m.If(last_inner):
                    m.d.sync += o_idx.eq(o_idx + 1)
                if os_flow:  # outer: m blocks (A tiles), inner: n blocks (B tiles)
                    with m.If(last_inner):
                        m.d.sync += [a_tile.eq(a_tile + c_len), b_tile.eq(c_b_base)]
                    with m.Else():
                        m.d.sync += b_tile.eq(b_tile + c_len)
                else:  # outer: n blocks, inner: k blocks (A tiles)
                    m.d.sync += a_tile.eq(Mux(last_inner, c_a_base, a_tile + c_len))
            with m.Else():
                m.d.sync += slot.eq(slot + 1)
        bump("mac", feed_valid, R * C)
        bump("pe_reg_write", feed_valid, R * C)
        bump("ifmap_sram_read", feed_valid, R)
        if os_flow:
            bump("weight_sram_read", feed_valid, C)

        # scratchpad data arrives one cycle after the address: delay the flags to match
        v1, f1, l1 = Signal(), Signal(), Signal()
        wl1, wr1 = Signal(), Signal(range(max(R, 2)))
        m.d.sync += [v1.eq(feed_valid), f1.eq(feed_first), l1.eq(feed_last),
                     wl1.eq(wl_issue & ~starving), wr1.eq(wl_row)]

        if os_flow:
            m.submodules.mesh = mesh = OsMesh(params=p)
            m.d.comb += [mesh.a.eq(ifmap_r.data), mesh.b.eq(weight_r.data),
                         mesh.valid.eq(v1), mesh.first.eq(f1), mesh.last.eq(l1)]
        else:
            m.submodules.mesh = mesh = WsMesh(params=p)
            m.d.comb += [mesh.a.eq(ifmap_r.data), mesh.valid.eq(v1), mesh.switch.eq(f1),
                         mesh.wl_valid.eq(wl1), mesh.wl_row.eq(wr1),
                         mesh.wl_data.eq(weight_r.data)]

        # ---- compute engine: drain (read-modify-write of the accumulator scratchpad) -------
        d_row_base = Signal(ADDR_BITS)  # os: row of (mb, nb) tile; ws: row of (nb, m=0)
        d_mb_base = Signal(ADDR_BITS)
        d_o = Signal(ADDR_BITS)
        d_i = Signal(ADDR_BITS)
        d_m = Signal(ADDR_BITS)
        block_stride = Signal(ADDR_BITS)  # os: rows of one n block = outer * rows
        d_ovw = Signal()
        d_inner = Signal(ADDR_BITS)
        d_len = Signal(ADDR_BITS)
        d_tiles = Signal(ADDR_BITS)
        d_drained = Signal(ADDR_BITS)  # array tiles of the drained instruction written back
        d_busy = Signal()
        # the next instruction's drain parameters, while this one's last tiles still drain
        pend = {name: Signal(ADDR_BITS, name=f"pend_{name}")
                for name in ("acc_base", "outer", "inner", "length", "tiles")}
        pend_ovw = Signal()
        pend_valid = Signal()
        rd_addr = Signal(ADDR_BITS)
        rd_ovw = Signal()
        tile_end = Signal()
        if os_flow:
            m.d.comb += [rd_addr.eq(d_row_base + mesh.out_row), rd_ovw.eq(d_ovw),
                         tile_end.eq(mesh.early & (mesh.out_row == 0))]
            with m.If(tile_end):
                with m.If(d_i + 1 == d_inner):
                    m.d.sync += [d_i.eq(0), d_mb_base.eq(d_mb_base + R),
                                 d_row_base.eq(d_mb_base + R)]
                with m.Else():
                    m.d.sync += [d_i.eq(d_i + 1), d_row_base.eq(d_row_base + block_stride)]
        else:
            m.d.comb += [rd_addr.eq(d_row_base + d_m), rd_ovw.eq(d_ovw & (d_i == 0)),
                         tile_end.eq(mesh.early & (d_m + 1 == d_len))]
            with m.If(mesh.early):
                m.d.sync += d_m.eq(Mux(d_m + 1 == d_len, 0, d_m + 1))
            with m.If(tile_end):
                with m.If(d_i + 1 == d_inner):
                    m.d.sync += [d_i.eq(0), d_row_base.eq(d_row_base + d_len)]
                with m.Else():
                    m.d.sync += d_i.eq(d_i + 1)
        with m.If(tile_end):
            m.d.sync += d_drained.eq(d_drained + 1)

        def load_drain(acc_base, outer, inner, length, tiles_, ovw) -> list:
            return [d_row_base.eq(acc_base), d_mb_base.eq(acc_base), d_o.eq(0), d_i.eq(0),
                    d_m.eq(0), block_stride.eq(outer * R), d_inner.eq(inner), d_len.eq(length),
                    d_tiles.eq(tiles_), d_ovw.eq(ovw), d_drained.eq(0)]

        last_drain = Signal()
        m.d.comb += last_drain.eq(tile_end & (d_drained + 1 == d_tiles))
        with m.If(start_compute):
            with m.If(~d_busy | (last_drain & ~pend_valid)):
                m.d.sync += load_drain(fields["c_acc_base"], fields["c_outer"],
                                       fields["c_inner"], length, tiles_n, flags[4])
                m.d.sync += d_busy.eq(1)
            with m.Else():
                with m.If(last_drain):  # the pending drain starts, this one waits in its place
                    m.d.sync += load_drain(pend["acc_base"], pend["outer"], pend["inner"],
                                           pend["length"], pend["tiles"], pend_ovw)
                m.d.sync += [pend["acc_base"].eq(fields["c_acc_base"]),
                             pend["outer"].eq(fields["c_outer"]),
                             pend["inner"].eq(fields["c_inner"]), pend["length"].eq(length),
                             pend["tiles"].eq(tiles_n), pend_ovw.eq(flags[4]),
                             pend_valid.eq(1)]
        with m.Elif(last_drain):
            with m.If(pend_valid):
                m.d.sync += load_drain(pend["acc_base"], pend["outer"], pend["inner"],
                                       pend["length"], pend["tiles"], pend_ovw)
                m.d.sync += pend_valid.eq(0)
            with m.Else():
                m.d.sync += d_busy.eq(0)
        # instructions whose sums are all in the scratchpad (one cycle after the last write)
        computes_started = Signal(ADDR_BITS)
        drains_done = Signal(ADDR_BITS)
        drain_pulse = Signal()
        m.d.sync += drain_pulse.eq(last_drain)
        with m.If(drain_pulse):
            m.d.sync += drains_done.eq(drains_done + 1)
        with m.If(start_compute):
            m.d.sync += computes_started.eq(computes_started + 1)
        m.d.comb += [acc_r.addr.eq(rd_addr), acc_r.en.eq(mesh.early)]
        wr_valid, wr_addr, wr_ovw = Signal(), Signal(ADDR_BITS), Signal()
        m.d.sync += [wr_valid.eq(mesh.early), wr_addr.eq(rd_addr), wr_ovw.eq(rd_ovw)]
        sums = []
        for c in range(C):
            old = acc_r.data.word_select(c, p.acc_bits)
            new = mesh.out.word_select(c, p.acc_bits)
            sums.append((Mux(wr_ovw, 0, old) + new)[:p.acc_bits])
        m.d.comb += [acc_w.en.eq(wr_valid), acc_w.addr.eq(wr_addr), acc_w.data.eq(Cat(*sums))]
        bump("acc_sram_read", mesh.early & ~rd_ovw, C)
        bump("acc_sram_write", wr_valid, C)

        # ---- DMA engine --------------------------------------------------------------------
        # Two engines, like an AXI master's read and write channels: the load engine issues the
        # A beats and then the B beats back to back on the read bus (one request every
        # ``ceil(row bytes / bus_bytes)`` cycles) while the responses of both channels are
        # written as they return; the store engine writes C rows on the write bus at the same
        # time. Every transfer is latched at dispatch, so neither engine reads the instruction
        # word afterwards.
        iss_a, rsp_a = _Walker(m, "iss_a"), _Walker(m, "rsp_a")
        iss_b, rsp_b = _Walker(m, "iss_b"), _Walker(m, "rsp_b")
        st_rev = Signal()  # the store's rows in drain order (os: each burst last row first)
        st = _Walker(m, "st", reverse=st_rev if os_flow else None)
        cpr_a = cycles_per_beat(R * e, p.bus_bytes)
        cpr_b = cycles_per_beat(C * e, p.bus_bytes)
        cpr_c = cycles_per_beat(C * ob, p.bus_bytes)
        # read-bus cycles until the next request may issue, write-bus cycles until the next row
        # may be written: wide enough for a whole beat (a C row of 64-bit sums on 33 or more
        # columns takes over 256 cycles on a 1-byte bus), and at least 8 bits (the width all
        # designs had: the Verilog of those whose beats fit in it is unchanged)
        rd_pace = Signal(max(8, (max(cpr_a, cpr_b) - 1).bit_length()))
        wr_pace = Signal(max(8, (cpr_c - 1).bit_length()))
        st_valid, st_addr, st_fire = Signal(), Signal(ADDR_BITS), Signal()
        need_drained = Signal(ADDR_BITS)  # compute instructions dispatched before this one
        b_ends = (rsp_b.left == 0) | (self.b_resp_valid
                                      & (rsp_b.left == rsp_b.rows_now(self._beat_b)))
        a_last_now = self.a_resp_valid & (rsp_a.left == rsp_a.rows_now(self._beat_a))
        a_rsp_done = (rsp_a.left == 0) | a_last_now  # the walker's rows are all in after this cycle
        if not ahead:
            # the DMA ends when the last responses arrive (or none are due) and no row is left
            # to store (the last one may still be on its way out)
            m.d.comb += dma_ends.eq(a_rsp_done & b_ends & (st.left == 0))
        # load engine: issue side (A first, then B; a streaming instruction alternates A and
        # B beats, so the rows of its first array tile arrive together)
        rd_stream = Signal()
        rd_turn_b = Signal()
        issue_a = (iss_a.left != 0) & (rd_pace == 0) & (~rd_stream | ~rd_turn_b
                                                        | (iss_b.left == 0))
        issue_b = (iss_b.left != 0) & (rd_pace == 0) & ((iss_a.left == 0)
                                                        | (rd_stream & rd_turn_b))
        m.d.comb += [self.a_req_valid.eq(issue_a), self.a_req_addr.eq(iss_a.ext),
                     self.b_req_valid.eq(issue_b), self.b_req_addr.eq(iss_b.ext)]
        with m.If(issue_a):
            iss_a.step(self._beat_a)
            m.d.sync += [rd_pace.eq(cpr_a - 1), rd_turn_b.eq(1)]
        with m.Elif(issue_b):
            iss_b.step(self._beat_b)
            m.d.sync += [rd_pace.eq(cpr_b - 1), rd_turn_b.eq(0)]
        with m.Elif(rd_pace != 0):
            m.d.sync += rd_pace.eq(rd_pace - 1)

        # An ahead instruction (flag bit 9, A loads only) ends when its last A request is
        # issued; the walker then writes its responses under the next instruction (``on_prev``)
        # while the next instruction's A load waits in ``pend_a``, taken up in the cycle of
        # their last response. At most one older instruction's responses are ever outstanding.
        dma_ahead = Signal()
        on_prev = Signal()
        # its scratchpad side only, with its row count (one multiplier, the dispatch's)
        pend_a = [Signal(ADDR_BITS, name=f"pend_a_{n}")
                  for n in ("spad_base", "spad_stride", "length", "left")]
        pend_a_valid = Signal()
        if ahead:
            # the same, but an ahead instruction's own A responses excepted (assigned here,
            # after the issue side it looks at; the plain design's Verilog stays as it was)
            a_issued = (iss_a.left == 0) | (issue_a
                                            & (iss_a.left == iss_a.rows_now(self._beat_a)))
            m.d.comb += dma_ends.eq(
                Mux(dma_ahead, a_issued & (~on_prev | a_last_now), a_rsp_done & ~pend_a_valid)
                & b_ends & (st.left == 0))

        # load engine: response side, one walker per channel
        for walker, resp_valid, resp_data, wports, name, width, k, seen in (
            (rsp_a, self.a_resp_valid, self.a_resp_data, ifmap_ws, "ifmap", R, self._beat_a,
             a_seen),
            (rsp_b, self.b_resp_valid, self.b_resp_data, weight_ws, "weight", C, self._beat_b,
             b_seen),
        ):
            got = walker.rows_now(k)
            row_bits = width * p.in_bits
            for i, wport in enumerate(wports):
                m.d.comb += [wport.addr.eq(walker.spad + i),
                             wport.data.eq(resp_data[i * row_bits:(i + 1) * row_bits]),
                             wport.en.eq(resp_valid & (got > i))]
            with m.If(resp_valid):
                walker.step(k)
            rows_in = Signal(range(k + 1), name=f"{name}_rows_in")
            m.d.comb += rows_in.eq(Mux(resp_valid, got, 0))
            if ahead and name == "ifmap":  # A: rows of its descriptor, its own or an older one's
                with m.If(go):
                    m.d.sync += [seen.eq(0),
                                 a_seen_prev.eq(Mux(on_prev, seen, seen + rows_in))]
                with m.Elif(on_prev):
                    m.d.sync += a_seen_prev.eq(a_seen_prev + rows_in)
                with m.Else():
                    m.d.sync += seen.eq(seen + rows_in)
            else:
                with m.If(go):
                    m.d.sync += seen.eq(0)
                with m.Else():
                    m.d.sync += seen.eq(seen + rows_in)
            bump(f"{name}_sram_write", 1, rows_in * width)
            bump("dram_read_bytes", 1, rows_in * (width * e))

        # store engine: the stored tile's last sums may still be draining from the last
        # compute. A store marked by the program (``s_wait_first``) starts each burst once
        # the array tiles it reads are drained: ``st_need`` tiles (``wait_first``, then
        # ``wait_step`` more per burst) of the drain in progress, which is the last compute's
        # when only it is outstanding. The tile count is looked at one cycle late, so that the
        # tile's last row is written before it is read.
        # The drain writes a tile's rows one per cycle (ws: in order; os: last row first): a
        # burst stored in that order (always on ws; os: ``in_drain_order``) may then also start
        # on the rows of its last tile already written (``rows_drained``, one cycle late as
        # well), and its later rows never overtake the drain.
        st_need = Signal(ADDR_BITS)
        st_step = Signal(ADDR_BITS)
        st_early = Signal()
        tiles_drained = Signal(ADDR_BITS)
        m.d.sync += tiles_drained.eq(d_drained)
        rows_drained = Signal(ADDR_BITS)
        if os_flow:
            m.d.sync += rows_drained.eq(Mux(mesh.early, (R - 1 - mesh.out_row).as_unsigned(), 0))
            follow = st_rev
        else:
            m.d.sync += rows_drained.eq(d_m)
            follow = 1
        tiles_ok = (tiles_drained >= st_need) | (
            follow & (tiles_drained + 1 == st_need) & (rows_drained > st.elem))
        drained = (drains_done >= need_drained) | (
            st_early & (drains_done + 1 == need_drained) & tiles_ok)
        m.d.comb += st_fire.eq((st.left != 0) & (wr_pace == 0) & drained)
        m.d.comb += acc_s.addr.eq(st.spad)
        with m.If(st_fire):
            with m.If(st.elem + 1 == st.length):
                m.d.sync += st_need.eq(st_need + st_step)
            st.step()
            m.d.sync += wr_pace.eq(cpr_c - 1)
        with m.Elif(wr_pace != 0):
            m.d.sync += wr_pace.eq(wr_pace - 1)
        bump("acc_sram_read", st_fire, C)
        # store pipeline: the scratchpad row arrives one cycle after its address
        m.d.sync += [st_valid.eq(st_fire), st_addr.eq(st.ext)]
        m.d.comb += [self.c_wr_valid.eq(st_valid), self.c_wr_addr.eq(st_addr)]
        if p.out_bits is None:
            m.d.comb += self.c_wr_data.eq(acc_s.data)
        else:
            # requantize every column on its way out (see golden.requantize): add the rounding
            # term 2**(shift-1) (latched with the shift at dispatch), arithmetic right shift,
            # saturate to the signed ``out_bits`` range
            st_shift = Signal(range(p.acc_bits), name="st_shift")
            st_round = Signal(p.acc_bits, name="st_round")
            with m.If(go):
                shift_field = fields["s_shift"][:len(st_shift)]
                m.d.sync += [st_shift.eq(shift_field),
                             st_round.eq((Const(1, p.acc_bits) << shift_field) >> 1)]
            hi, lo = (1 << (p.out_bits - 1)) - 1, -(1 << (p.out_bits - 1))
            outs = []
            for c in range(C):
                total = acc_s.data.word_select(c, p.acc_bits).as_signed() + st_round
                shifted = Signal(total.shape(), name=f"requant_{c}")
                m.d.comb += shifted.eq(total >> st_shift)
                outs.append(Mux(shifted > hi, hi, Mux(shifted < lo, lo, shifted))[:p.out_bits])
            m.d.comb += self.c_wr_data.eq(Cat(*outs))
        bump("dram_write_bytes", st_valid, C * ob)

        # dispatch: latch the transfers (both engines are idle from the next cycle on: the last
        # response is written and the last stored row sent in this cycle; a bus pace may still
        # be counting down from the previous instruction's last beat and keeps the bus rate)
        with m.If(go):
            m.d.sync += [need_drained.eq(computes_started), st_need.eq(fields["s_wait_first"]),
                         st_rev.eq(flags[7]), rd_stream.eq(flags[8]), rd_turn_b.eq(0),
                         st_step.eq(fields["s_wait_step"]),
                         st_early.eq(fields["s_wait_first"] != 0)]
            for walker, flag, prefix in ((iss_a, 1, "a"), *(() if ahead else ((rsp_a, 1, "a"),)),
                                         (iss_b, 2, "b"), (rsp_b, 2, "b"), (st, 3, "s")):
                m.d.sync += walker.load(fields, prefix)
                with m.If(~flags[flag]):
                    m.d.sync += walker.left.eq(0)
        if ahead:
            self._dispatch_ahead(m, go, fields, flags, rsp_a, dma_ahead, on_prev, pend_a,
                                 pend_a_valid, a_rsp_done, a_last_now)

        # ws cross-instruction preload (feeder): the weight load's responses are all written
        m.d.comb += weights_loaded.eq(rsp_b.left == 0)

        # ---- counter updates ---------------------------------------------------------------
        for name, items in bumps.items():
            if not items:
                with m.If(clear):
                    m.d.sync += counters[name].eq(0)
                continue
            total = sum(Mux(cond, amount, 0) for cond, amount in items)
            with m.If(clear):
                m.d.sync += counters[name].eq(0)
            with m.Else():
                m.d.sync += counters[name].eq(counters[name] + total)
        return m

    @staticmethod
    def _dispatch_ahead(m: Module, go, fields: dict, flags, rsp_a: _Walker, dma_ahead, on_prev,
                        pend_a: list, pend_a_valid, a_rsp_done, a_last_now) -> None:
        """read_ahead: the A response walker at a dispatch, and when it finishes an older
        instruction's responses."""
        with m.If(go):
            m.d.sync += dma_ahead.eq(flags[9])
            # the ending (ahead) instruction's responses still due after this cycle, in the
            # walker or, in the cycle of an older one's last response, in ``pend_a``
            new = (fields["a_spad_base"], fields["a_spad_stride"], fields["a_length"],
                   fields["a_bursts"] * fields["a_length"])
            with m.If(~a_rsp_done | pend_a_valid):
                m.d.sync += [on_prev.eq(1), pend_a_valid.eq(flags[1]),
                             *(reg.eq(value) for reg, value in zip(pend_a, new, strict=True))]
                with m.If(pend_a_valid):
                    m.d.sync += rsp_a.load_spad(*pend_a)
            with m.Else():
                m.d.sync += [on_prev.eq(0), *rsp_a.load_spad(*new)]
                with m.If(~flags[1]):
                    m.d.sync += rsp_a.left.eq(0)
        with m.Elif(on_prev & a_last_now):
            m.d.sync += on_prev.eq(0)
            with m.If(pend_a_valid):
                m.d.sync += [pend_a_valid.eq(0), *rsp_a.load_spad(*pend_a)]
