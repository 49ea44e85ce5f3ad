"""The PE meshes: output-stationary and weight-stationary, with input skew and output deskew.

Both meshes take one scratchpad row per cycle on their edges and give one accumulator row per
cycle (all ``cols`` columns aligned) one cycle after an ``early`` strobe, so the drain logic can
read the accumulator scratchpad in the strobe cycle and write the sum in the next.

Each PE is a module of its own (:class:`OsPE`, :class:`WsPE`): synthesis counts each kind of PE
once, whatever the mesh size, and Verilator inlines them as before. Data registers have no
reset, only the flags that say which data is valid do: plain flops instead of ones with a
synchronous reset, and about a fifth less simulation time on an 8x8 mesh.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwloop.hdl.systolic.params import SystolicParams


def _delay(m: Module, signal, cycles: int, name: str):
    """Data ``signal`` through ``cycles`` registers (without reset, as every data register)."""
    for i in range(cycles):
        reg = Signal.like(signal, name=f"{name}_d{i}", reset_less=True)
        m.d.sync += reg.eq(signal)
        signal = reg
    return signal


def _diagonal_taps(m: Module, flags, cycles: int) -> list:
    """``flags`` and its ``cycles`` delayed copies: tap ``d`` is ``flags`` ``d`` cycles late.

    The flags that travel with the operands reach PE (r, c) ``r + c`` cycles after the edge, so
    every PE of an anti-diagonal reads the same tap: ``rows + cols - 1`` registers instead of
    one per PE. Synthesis merged the per-PE copies anyway (the flop count is the same); the
    simulated model tests each tap once per diagonal, about a quarter less time on 8x8."""
    taps = [flags]
    for d in range(1, cycles + 1):
        tap = Signal.like(flags, name=f"fdiag{d}")
        m.d.sync += tap.eq(taps[-1])
        taps.append(tap)
    return taps


class OsMesh(wiring.Component):
    """Output-stationary ``rows x cols`` mesh.

    Row ``r`` takes A[m0+r, k] and column ``c`` takes B[k, n0+c] at the same step k; the flags
    ``first``/``last`` mark the first and last k of an array tile. On ``last`` each PE copies
    its sum into a shadow register; when a whole column has its shadows, they are shifted out
    over ``rows`` cycles (bottom row first) while the next tile already accumulates.
    ``early`` rises one cycle before ``out`` holds a row; ``out_row`` is that row's index.
    """

    def __init__(self, *, params: SystolicParams):
        self._p = params
        super().__init__({
            "a": In(unsigned(params.rows * params.in_bits)),
            "b": In(unsigned(params.cols * params.in_bits)),
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "early": Out(1),
            "out_row": Out(range(max(params.rows, 2))),
            "out": Out(unsigned(params.cols * params.acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._p
        R, C, W, A = p.rows, p.cols, p.in_bits, p.acc_bits
        a_edge = [_delay(m, self.a.word_select(r, W).as_signed(), r, f"askew{r}")
                  for r in range(R)]
        f_diag = _diagonal_taps(m, Cat(self.valid, self.first, self.last), R + C - 1)
        b_edge = [_delay(m, self.b.word_select(c, W).as_signed(), c, f"bskew{c}")
                  for c in range(C)]

        loads = [Signal(name=f"load_{c}") for c in range(C)]
        pes = [[OsPE(params=p, top_row=r == 0) for _ in range(C)] for r in range(R)]
        for r in range(R):
            for c in range(C):
                pe = m.submodules[f"pe_{r}_{c}"] = pes[r][c]
                m.d.comb += [pe.a_in.eq(a_edge[r] if c == 0 else pes[r][c - 1].a_out),
                             pe.b_in.eq(b_edge[c] if r == 0 else pes[r - 1][c].b_out),
                             pe.flags.eq(f_diag[r + c]), pe.load.eq(loads[c])]
                if r > 0:
                    m.d.comb += pe.chain_in.eq(pes[r - 1][c].chain_out)
        outs = []
        for c in range(C):
            # column c's shadows are complete when the last flags have passed its bottom PE
            m.d.comb += loads[c].eq(f_diag[R + c][0] & f_diag[R + c][2])
            outs.append(_delay(m, pes[R - 1][c].chain_out, C - 1 - c, f"deskew{c}"))
        load_last = loads[C - 1]
        out_reg = Signal(unsigned(C * A), reset_less=True)
        m.d.sync += out_reg.eq(Cat(*[o.as_unsigned() for o in outs]))
        m.d.comb += self.out.eq(out_reg)

        left = Signal(range(R + 1))
        with m.If(load_last):
            m.d.sync += left.eq(R)
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        m.d.comb += [self.early.eq(left != 0), self.out_row.eq(left - 1)]
        return m


class WsMesh(wiring.Component):
    """Weight-stationary ``rows x cols`` mesh: PE(r, c) holds B[k0+r, n0+c].

    Row ``r`` takes A[m, k0+r]; partial sums flow down the columns, as wide as the rows above
    need (:func:`psum_bits`; the deskew widens them to ``acc_bits``). Each PE has an active and a
    next weight: ``wl_valid`` writes row ``wl_row`` of next weights while the current tile
    streams, and ``switch`` (with the first A of a tile) makes them active as it passes.
    ``early`` rises one cycle before ``out`` holds the row of sums for one m.
    """

    def __init__(self, *, params: SystolicParams):
        self._p = params
        super().__init__({
            "a": In(unsigned(params.rows * params.in_bits)),
            "valid": In(1),
            "switch": In(1),
            "wl_valid": In(1),
            "wl_row": In(range(max(params.rows, 2))),
            "wl_data": In(unsigned(params.cols * params.in_bits)),
            "early": Out(1),
            "out": Out(unsigned(params.cols * params.acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._p
        R, C, W, A = p.rows, p.cols, p.in_bits, p.acc_bits
        a_edge = [_delay(m, self.a.word_select(r, W).as_signed(), r, f"askew{r}")
                  for r in range(R)]
        f_diag = _diagonal_taps(m, Cat(self.valid, self.switch), R + C - 1)

        pes = [[WsPE(params=p, row=r) for _ in range(C)] for r in range(R)]
        for r in range(R):
            row_hit = Signal(name=f"wl_hit_{r}")
            m.d.comb += row_hit.eq(self.wl_valid & (self.wl_row == r))
            for c in range(C):
                pe = m.submodules[f"pe_{r}_{c}"] = pes[r][c]
                m.d.comb += [pe.a_in.eq(a_edge[r] if c == 0 else pes[r][c - 1].a_out),
                             pe.flags.eq(f_diag[r + c]), pe.wl_hit.eq(row_hit),
                             pe.wl_data.eq(self.wl_data.word_select(c, W))]
                if r > 0:
                    m.d.comb += pe.p_in.eq(pes[r - 1][c].p_out)

        outs = [_delay(m, pes[R - 1][c].p_out, C - 1 - c, f"deskew{c}") for c in range(C)]
        out_reg = Signal(unsigned(C * A), reset_less=True)
        m.d.sync += out_reg.eq(Cat(*[_widened(m, o, A) for o in outs]))
        m.d.comb += [self.out.eq(out_reg), self.early.eq(f_diag[R + C - 1][0])]
        return m


class OsPE(wiring.Component):
    """One output-stationary PE: operands in from the left and the top, out to the right and
    the bottom a cycle later; ``flags`` (valid, first, last) of the operands. Accumulates
    ``a_in * b_in`` while valid, starting afresh on ``first``, and copies the sum into its
    shadow on ``last``. Its register of the column's shift-out chain takes the shadow on
    ``load`` and otherwise the register above (``chain_in``; zeros on the ``top_row``)."""

    def __init__(self, *, params: SystolicParams, top_row: bool):
        W, A = params.in_bits, params.acc_bits
        ports = {"a_in": In(signed(W)), "b_in": In(signed(W)), "flags": In(3), "load": In(1),
                 "a_out": Out(signed(W)), "b_out": Out(signed(W)), "chain_out": Out(signed(A))}
        if not top_row:
            ports["chain_in"] = In(signed(A))
        super().__init__(ports)
        self._acc_bits = A
        self._top_row = top_row

    def elaborate(self, platform):
        m = Module()
        A = self._acc_bits
        a = Signal.like(self.a_out, name="a", reset_less=True)
        b = Signal.like(self.b_out, name="b", reset_less=True)
        acc = Signal(signed(A), name="acc", reset_less=True)
        shadow = Signal(signed(A), name="shadow", reset_less=True)
        chain = Signal(signed(A), name="chain", reset_less=True)
        total = Signal(signed(A), name="sum")
        m.d.sync += [a.eq(self.a_in), b.eq(self.b_in)]
        m.d.comb += total.eq(Mux(self.flags[1], 0, acc) + self.a_in * self.b_in)
        with m.If(self.flags[0]):
            m.d.sync += acc.eq(total)
            with m.If(self.flags[2]):
                m.d.sync += shadow.eq(total)
        with m.If(self.load):
            m.d.sync += chain.eq(shadow)
        with m.Else():
            m.d.sync += chain.eq(0 if self._top_row else self.chain_in)
        m.d.comb += [self.a_out.eq(a), self.b_out.eq(b), self.chain_out.eq(chain)]
        return m


def psum_bits(params: SystolicParams, row: int) -> int:
    """Bits of the ws partial sums leaving PE row ``row``: the sum of ``row + 1`` products of
    two signed ``in_bits`` numbers never needs more than ``2 in_bits + ceil(log2(row + 1))``
    bits, and never more than ``acc_bits`` (where the sums wrap)."""
    return min(params.acc_bits, 2 * params.in_bits + row.bit_length())


def _widened(m: Module, value, bits: int):
    """``value`` sign-extended (or wrapped) to a ``bits``-bit field.

    Written as a signed add of a ``bits``-wide zero: Amaranth spells a plain widening out as a
    concatenation of copies of the sign bit, which Verilator evaluates bit by bit (an 8x8 ws
    free run is 3% faster without), while the add's operand is sign-extended by Verilog's own
    rules, one instruction in the simulator; synthesis removes the add of zero."""
    wide = Signal(unsigned(bits), name=f"{value.name}_x")
    m.d.comb += wide.eq((value + Const(0, signed(bits)))[:bits])
    return wide


class WsPE(wiring.Component):
    """One weight-stationary PE of PE row ``row``: ``a_in`` from the left (out to the right a
    cycle later), the partial sum ``p_in`` from the row above (none on row 0); ``p_out`` adds
    ``a_in`` times the active weight, in :func:`psum_bits` bits. ``wl_hit`` writes ``wl_data``
    as the next weight; ``flags`` (valid, switch) with the first A of a tile make it the active
    one as it passes."""

    def __init__(self, *, params: SystolicParams, row: int):
        W = params.in_bits
        ports = {"a_in": In(signed(W)), "flags": In(2), "wl_hit": In(1),
                 "wl_data": In(signed(W)), "a_out": Out(signed(W)),
                 "p_out": Out(signed(psum_bits(params, row)))}
        if row > 0:
            ports["p_in"] = In(signed(psum_bits(params, row - 1)))
        super().__init__(ports)
        self._top_row = row == 0

    def elaborate(self, platform):
        m = Module()
        a = Signal.like(self.a_out, name="a", reset_less=True)
        psum = Signal.like(self.p_out, name="psum", reset_less=True)
        w_act = Signal.like(self.wl_data, name="w", reset_less=True)
        w_next = Signal.like(self.wl_data, name="wn", reset_less=True)
        take = self.flags[0] & self.flags[1]
        with m.If(take):
            m.d.sync += w_act.eq(w_next)
        with m.If(self.wl_hit):
            m.d.sync += w_next.eq(self.wl_data)
        product = self.a_in * Mux(take, w_next, w_act)
        m.d.sync += [a.eq(self.a_in), psum.eq(product if self._top_row else self.p_in + product)]
        m.d.comb += [self.a_out.eq(a), self.p_out.eq(psum)]
        return m
