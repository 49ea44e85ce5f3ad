"""The PE meshes: output-stationary and weight-stationary, with input skew and output deskew.

Both meshes take one scratchpad row per cycle on their edges and give one accumulator row per
cycle (all ``cols`` columns aligned) one cycle after an ``early`` strobe, so the drain logic can
read the accumulator scratchpad in the strobe cycle and write the sum in the next.
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


def _pe_registers(rows: int, cols: int, shape, name: str) -> list[list[Signal]]:
    """One data register per PE. Data registers have no reset, only the flags that say which
    data is valid do: plain flops instead of ones with a synchronous reset, and about a fifth
    less simulation time on an 8x8 mesh."""
    return [[Signal(shape, name=f"{name}_{r}_{c}", reset_less=True) for c in range(cols)]
            for r in range(rows)]


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

        a_reg = _pe_registers(R, C, signed(W), "a")
        b_reg = _pe_registers(R, C, signed(W), "b")
        shadow = _pe_registers(R, C, signed(A), "shadow")
        for r in range(R):
            for c in range(C):
                a_in = a_edge[r] if c == 0 else a_reg[r][c - 1]
                f_in = f_diag[r + c]
                b_in = b_edge[c] if r == 0 else b_reg[r - 1][c]
                m.d.sync += [a_reg[r][c].eq(a_in), b_reg[r][c].eq(b_in)]
                acc = Signal(signed(A), name=f"acc_{r}_{c}", reset_less=True)
                total = Signal(signed(A), name=f"sum_{r}_{c}")
                m.d.comb += total.eq(Mux(f_in[1], 0, acc) + a_in * b_in)
                with m.If(f_in[0]):
                    m.d.sync += acc.eq(total)
                    with m.If(f_in[2]):
                        m.d.sync += shadow[r][c].eq(total)

        outs = []
        load_last = Signal()
        for c in range(C):
            load = Signal(name=f"load_{c}")
            m.d.comb += load.eq(f_diag[R + c][0] & f_diag[R + c][2])
            chain = [Signal(signed(A), name=f"chain_{r}_{c}", reset_less=True) for r in range(R)]
            for r in range(R):
                with m.If(load):
                    m.d.sync += chain[r].eq(shadow[r][c])
                with m.Else():
                    m.d.sync += chain[r].eq(chain[r - 1] if r > 0 else 0)
            outs.append(_delay(m, chain[R - 1], C - 1 - c, f"deskew{c}"))
            if c == C - 1:
                m.d.comb += load_last.eq(load)
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

    Row ``r`` takes A[m, k0+r]; partial sums flow down the columns. Each PE has an active and a
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

        a_reg = _pe_registers(R, C, signed(W), "a")
        psum = _pe_registers(R, C, signed(A), "psum")
        for r in range(R):
            row_hit = Signal(name=f"wl_hit_{r}")
            m.d.comb += row_hit.eq(self.wl_valid & (self.wl_row == r))
            for c in range(C):
                a_in = a_edge[r] if c == 0 else a_reg[r][c - 1]
                f_in = f_diag[r + c]
                p_in = Const(0, signed(A)) if r == 0 else psum[r - 1][c]
                w_act = Signal(signed(W), name=f"w_{r}_{c}", reset_less=True)
                w_next = Signal(signed(W), name=f"wn_{r}_{c}", reset_less=True)
                take = f_in[0] & f_in[1]
                w_use = Mux(take, w_next, w_act)
                with m.If(take):
                    m.d.sync += w_act.eq(w_next)
                with m.If(row_hit):
                    m.d.sync += w_next.eq(self.wl_data.word_select(c, W).as_signed())
                m.d.sync += [a_reg[r][c].eq(a_in), psum[r][c].eq(p_in + a_in * w_use)]

        outs = [_delay(m, psum[R - 1][c], C - 1 - c, f"deskew{c}") for c in range(C)]
        out_reg = Signal(unsigned(C * A), reset_less=True)
        m.d.sync += out_reg.eq(Cat(*[o.as_unsigned() for o in outs]))
        m.d.comb += [self.out.eq(out_reg), self.early.eq(f_diag[R + C - 1][0])]
        return m
