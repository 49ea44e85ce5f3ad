"""The instruction program that runs one GEMM on the accelerator, and its encoding.

The runner writes this program into the accelerator's instruction memory; the analytical model
walks the same program. One instruction is one pipeline step of the double-buffered tile loop:
it computes scratchpad tile ``j-1``, loads the operands of tile ``j`` and stores the output tile
finished at step ``j-2``. DMA and compute of an instruction run in parallel; the next
instruction starts when both are done. The first and last scratchpad tiles are split into
smaller instructions (``_split_ends``, ``_split_ends_ws_pieces``) to shorten
the pipeline fill and drain where the model says that is faster. On ws an instruction may
preload the next compute's first weights (``mark_preloads``), and an instruction that loads
only A rows the next compute reads in order may end before they arrive (``mark_ahead``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hwloop.sim.systolic.mapping import (
    Gemm,
    Mapping,
    padded_dims,
    scratchpad_geometry,
)

if TYPE_CHECKING:
    from hwloop.sim.systolic.model import WalkTrace

#: Bits of every instruction field (row addresses, counts, strides).
FIELD_BITS = 32


def replace(record, **changes):
    """``dataclasses.replace`` for the program's frozen records (which have no
    ``__post_init__``), without its per-call field introspection: the program builder and the
    model's candidate programs make thousands of such copies per layer."""
    assert changes.keys() <= record.__dict__.keys(), changes.keys() - record.__dict__.keys()
    return _copy(record, changes)


def _copy(record, changes: dict):
    """``record`` with ``changes`` (field names the caller guarantees)."""
    new = object.__new__(type(record))
    new.__dict__.update(record.__dict__)
    new.__dict__.update(changes)
    return new


def rows_per_beat(row_bytes: int, bus_bytes: int) -> int:
    """Rows one bus beat carries: as many whole rows as fit in ``bus_bytes`` (at least one)."""
    return max(1, bus_bytes // row_bytes)


def cycles_per_beat(row_bytes: int, bus_bytes: int) -> int:
    """Bus cycles of one beat: one, or ``ceil(row_bytes / bus_bytes)`` for rows wider than the
    bus."""
    return max(1, -(-row_bytes // bus_bytes))


def prologue_length(params) -> int:
    """ws: cycles of the weight prologue before a compute's first feed when its first weights
    were not preloaded. Rows from this one on load in the first tile's first slots (row r in
    slot r - prologue_length, just as the first A row reaches PE row r), and must be done
    before that tile's preload window opens at slot cols-1: so one cycle, or more on an array
    with fewer columns than rows."""
    return max(1, params.rows - params.cols + 1)


def beats(transfer: Transfer, row_bytes: int, bus_bytes: int) -> int:
    """Beats of a transfer: bursts never share a beat."""
    per = rows_per_beat(row_bytes, bus_bytes)
    return transfer.bursts * -(-transfer.length // per)


@dataclass(frozen=True)
class Transfer:
    """A 2-D DMA transfer: ``bursts`` bursts of ``length`` rows, external rows ``stride`` apart,
    scratchpad bursts ``spad_stride`` rows apart from ``spad_base``.

    Stores only: with ``wait_first`` > 0, burst ``b`` may start once the drain of the last
    compute dispatched before this instruction has written ``wait_first + b * wait_step`` of
    its array tiles (``mark_store_waits``); otherwise, and in any case once that drain is
    complete, the store waits for nothing. ``in_drain_order`` (os stores whose every burst is
    one array tile of ``rows`` rows): each burst is stored last row first, the order the os
    drain writes a tile, so it starts on the rows already written (ws always drains and
    stores rows in the same order). ``shift``: the right shift the store engine requantizes
    with (designs with ``out_bits``; see ``golden.requantize``).
    """

    ext_base: int = 0
    ext_stride: int = 0
    spad_base: int = 0
    spad_stride: int = 0
    bursts: int = 0
    length: int = 0
    wait_first: int = 0
    wait_step: int = 0
    in_drain_order: bool = False
    shift: int = 0

    @property
    def rows(self) -> int:
        return self.bursts * self.length


@dataclass(frozen=True)
class Compute:
    """``outer x inner`` array tiles, each streaming ``length`` rows through the array.

    os: outer = m blocks of ``rows``, inner = n blocks of ``cols``, length = tile k.
    ws: outer = n blocks of ``cols``, inner = k blocks of ``rows``, length = tile m.
    """

    a_base: int = 0
    b_base: int = 0
    acc_base: int = 0
    outer: int = 0
    inner: int = 0
    length: int = 0
    overwrite: bool = False

    @property
    def array_tiles(self) -> int:
        return self.outer * self.inner


@dataclass(frozen=True)
class Instruction:
    """One pipeline step. ``preload_next`` (ws): the last array tile of this compute also
    loads the first weights of the next instruction's compute, which then skips its weight
    prologue; only set when those weight rows are already in the scratchpad.
    ``preload_next_when_loaded``: the same when this instruction's own weight load (which
    writes some of those rows) is complete as the last tile's preload window opens.
    ``stream``: the compute (os: a single array tile; ws: one n block) reads rows this
    instruction's own loads write, in the order they write them, and feeds each row as soon
    as it is written; the loads alternate A and B beats (``_stream_first``).
    ``ahead``: the instruction ends when its A requests are issued, not when their responses
    are written; the next instruction (``follow``) then computes on those rows as they arrive,
    in the order they are written (``mark_ahead``)."""

    compute: Compute | None = None
    load_a: Transfer | None = None
    load_b: Transfer | None = None
    store_c: Transfer | None = None
    preload_next: bool = False
    preload_next_when_loaded: bool = False
    stream: bool = False
    ahead: bool = False
    follow: bool = False


# all-default records to copy from (``_copy``): the builder makes one per step of every
# candidate mapping, and a frozen dataclass's __init__ sets each field through object.__setattr__
_COMPUTE = Compute()
_INSTRUCTION = Instruction()

#: Field order of an encoded instruction, least significant first.
FIELDS: tuple[str, ...] = (
    "flags",  # bit0 compute, bit1 load_a, bit2 load_b, bit3 store_c, bit4 overwrite,
    #           bit5 preload_next, bit6 preload_next_when_loaded, bit7 store in drain order,
    #           bit8 stream, bit9 ahead, bit10 follow
    "c_a_base", "c_b_base", "c_acc_base", "c_outer", "c_inner", "c_length",
    "a_ext_base", "a_ext_stride", "a_spad_base", "a_spad_stride", "a_bursts", "a_length",
    "b_ext_base", "b_ext_stride", "b_spad_base", "b_spad_stride", "b_bursts", "b_length",
    "s_ext_base", "s_ext_stride", "s_spad_base", "s_spad_stride", "s_bursts", "s_length",
    "s_wait_first", "s_wait_step", "s_shift",
)
INSTRUCTION_BITS = FIELD_BITS * len(FIELDS)


def encode(instr: Instruction) -> int:
    """The instruction as one integer (FIELDS packed LSB first, FIELD_BITS each)."""
    values: dict[str, int] = {name: 0 for name in FIELDS}
    flags = 0
    if instr.compute is not None:
        c = instr.compute
        flags |= 1 | (16 if c.overwrite else 0) | (32 if instr.preload_next else 0) \
            | (64 if instr.preload_next_when_loaded else 0) | (256 if instr.stream else 0) \
            | (1024 if instr.follow else 0)
        values.update(c_a_base=c.a_base, c_b_base=c.b_base, c_acc_base=c.acc_base,
                      c_outer=c.outer, c_inner=c.inner, c_length=c.length)
    for bit, prefix, t in ((2, "a", instr.load_a), (4, "b", instr.load_b), (8, "s", instr.store_c)):
        if t is not None:
            flags |= bit
            values.update({f"{prefix}_ext_base": t.ext_base, f"{prefix}_ext_stride": t.ext_stride,
                           f"{prefix}_spad_base": t.spad_base,
                           f"{prefix}_spad_stride": t.spad_stride, f"{prefix}_bursts": t.bursts,
                           f"{prefix}_length": t.length})
    if instr.store_c is not None:
        flags |= 128 if instr.store_c.in_drain_order else 0
        values.update(s_wait_first=instr.store_c.wait_first,
                      s_wait_step=instr.store_c.wait_step, s_shift=instr.store_c.shift)
    values["flags"] = flags | (512 if instr.ahead else 0)
    word = 0
    for i, name in enumerate(FIELDS):
        value = values[name]
        assert 0 <= value < (1 << FIELD_BITS), (name, value)
        word |= value << (i * FIELD_BITS)
    return word


@dataclass
class Layout:
    """Where the matrices live in external memory (rows of the scratchpad widths).

    os: A is stored as m blocks of ``rows``: row ``mb*K + k`` holds A[mb*rows + i, k] for i.
    ws: A is stored as k blocks of ``rows``: row ``kb*M + m`` holds A[m, kb*rows + i] for i.
    both: B row ``nb*Kp + k`` holds B[k, nb*cols + j] for j; C row ``nb*M + m`` holds
    C[m, nb*cols + j] for j. Padding elements are zero.
    """

    a_rows: int
    b_rows: int
    c_rows: int


@dataclass(frozen=True)
class Repeat:
    """Instructions ``start .. start+length-1`` of a compact program stand for ``times`` copies
    of themselves in a row. Repeats of a program are nested or disjoint (a laminar family): a
    repeat inside another is repeated within each of its copies."""

    start: int
    length: int
    times: int

    @property
    def stop(self) -> int:
        return self.start + self.length


@dataclass
class Program:
    instructions: list[Instruction] = field(default_factory=list)
    layout: Layout = field(default_factory=lambda: Layout(0, 0, 0))
    #: the model's cycles for ``instructions`` when the builder walked them to choose them
    cycles: int | None = None
    #: a compact program (``build_program(compact=True)``, for the model only): the runs of
    #: ``instructions`` that stand for several copies. Empty: ``instructions`` is the program.
    repeats: tuple[Repeat, ...] = ()


def expand(instructions: list[Instruction], repeats: tuple[Repeat, ...]) -> list[Instruction]:
    """The instruction list a compact program stands for (its copies are its representatives:
    they differ from the full program's only in external addresses, which no timing, action or
    mark depends on)."""
    inside = nested_repeats(repeats)

    def run(lo: int, hi: int, kids: list[Repeat]) -> list[Instruction]:
        out: list[Instruction] = []
        j = lo
        for r in kids:
            out += instructions[j:r.start]
            out += run(r.start, r.stop, inside[r]) * r.times
            j = r.stop
        return out + instructions[j:hi]

    return run(0, len(instructions), inside[None])


def nested_repeats(repeats: tuple[Repeat, ...]) -> dict[Repeat | None, list[Repeat]]:
    """The repeats directly inside each repeat (None: the top level), in program order."""
    inside: dict[Repeat | None, list[Repeat]] = {None: []}
    open_: list[Repeat] = []
    for r in sorted(repeats, key=lambda r: (r.start, -r.length)):
        while open_ and open_[-1].stop <= r.start:
            open_.pop()
        inside[open_[-1] if open_ else None].append(r)
        inside[r] = []
        open_.append(r)
    return inside


def multiplicities(n: int, repeats: tuple[Repeat, ...]) -> list[int]:
    """How many instructions of the full program each of a compact program's ``n`` stands for."""
    counts = [1] * n
    for r in repeats:
        for j in range(r.start, r.stop):
            counts[j] *= r.times
    return counts


def shifted(repeats: tuple[Repeat, ...], offset: int) -> tuple[Repeat, ...]:
    """``repeats`` of a program whose instructions moved by ``offset`` (a new head)."""
    return tuple(Repeat(r.start + offset, r.length, r.times) for r in repeats)


#: A compact program keeps iterations ``0 .. _KEEP_BEFORE-1`` of a long tile loop, then one pair
#: of iterations standing for all the middle ones (an even number: the double-buffer slots
#: alternate, so a pair leaves every slot where it found it), then at least one more middle
#: iteration and the last. The margins make every instruction of the pair see neighbours (its
#: compute and store come from the one or two steps before it; marks look one instruction
#: back and ahead) equal to those of every copy, and keep the pair clear of the ends the
#: split-end programs rewrite (their first three and last three instructions).
_KEEP_BEFORE = 3


def _loop_iterations(count: int, compact: bool) -> tuple[list[int], int]:
    """The iterations of a tile loop of ``count`` steps a program visits, and how many times
    the pair at ``_KEEP_BEFORE`` stands for (1: every iteration is visited)."""
    keep = 2 * _KEEP_BEFORE + 1 + (count + 1) % 2  # same parity as count, 7 or 8
    if not compact or count < keep + 2:
        return list(range(count)), 1
    return [*range(keep - 1), count - 1], 1 + (count - keep) // 2


def _tile_steps(counts: dict[str, int], order: str, compact: bool
                ) -> tuple[list[tuple[int, int, int]], tuple[Repeat, ...]]:
    """The tile steps (m, n, k block) of the loop nest ``order`` + k innermost, and, in a
    compact program, the repeats of its middle iterations (a step's instruction loads its
    operands, so step ``s`` is instruction ``s``)."""
    loops = [order[0], order[1], "k"]
    visited = [_loop_iterations(counts[d], compact) for d in loops]
    steps: list[tuple[int, int, int]] = []
    repeats: list[Repeat] = []
    index: dict[str, int] = {}

    def nest(level: int) -> None:
        iterations, times = visited[level]
        start = 0
        for pos, value in enumerate(iterations):
            index[loops[level]] = value
            if pos == _KEEP_BEFORE:
                start = len(steps)
            if level == 2:
                steps.append((index["m"], index["n"], index["k"]))
            else:
                nest(level + 1)
            if pos == _KEEP_BEFORE + 1 and times > 1:
                repeats.append(Repeat(start, len(steps) - start, times))

    nest(0)
    return steps, tuple(repeats)


def layout(params, gemm: Gemm) -> Layout:
    pm, pn, pk = padded_dims(params, gemm)
    if params.dataflow == "os":
        a_rows = (pm // params.rows) * gemm.k
    else:
        a_rows = (pk // params.rows) * gemm.m
    return Layout(a_rows=a_rows, b_rows=(pn // params.cols) * pk,
                  c_rows=(pn // params.cols) * gemm.m)


def tile_counts(params, gemm: Gemm, mapping: Mapping) -> dict[str, int]:
    """Scratchpad tiles of the (fitted) ``mapping`` along m, n and k: the program has one
    instruction per tile step, their product, and two more (a few more with split ends). m
    counts the program's m steps: the padded rows on os, the layer's on ws."""
    pm, pn, pk = padded_dims(params, gemm)
    m_extent = pm if params.dataflow == "os" else gemm.m
    return {"m": -(-m_extent // mapping.tile_m), "n": -(-pn // mapping.tile_n),
            "k": -(-pk // mapping.tile_k)}


def build_program(params, gemm: Gemm, mapping: Mapping, *,
                  split_ends: bool | None = None, ahead: bool | None = None,
                  out_shift: int = 0, compact: bool = False) -> Program:
    """The instruction program for ``gemm`` under ``mapping`` (fitted and checked by the caller).

    ``split_ends``: split the first and last scratchpad tiles (True), never (False), or where
    the model says it is faster (None). ``ahead``: let A loads finish under the next
    instruction (``mark_ahead``) wherever possible (True), never (False), or where the model
    says it is faster (None). ``out_shift``: every store's requantization shift.
    ``compact``: for the model only: a long tile loop's middle iterations are one pair of
    iterations repeated (``Program.repeats``; ``expand``), so building, marking and walking
    the program take time in the number of loop edges, not of tile steps.
    """
    R, C = params.rows, params.cols
    os_flow = params.dataflow == "os"
    pm, pn, pk = padded_dims(params, gemm)
    m_extent = pm if os_flow else gemm.m
    tm, tn, tk = mapping.tile_m, mapping.tile_n, mapping.tile_k
    geo = scratchpad_geometry(params)
    a_half, b_half, acc_half = geo.ifmap_rows // 2, geo.weight_rows // 2, geo.acc_rows // 2

    counts = tile_counts(params, gemm, mapping)
    steps, repeats = _tile_steps(counts, mapping.order, compact)

    def extents(step: tuple[int, int, int]) -> tuple[int, int, int, int, int, int]:
        mi, ni, ki = step
        m0, n0, k0 = mi * tm, ni * tn, ki * tk
        return m0, min(tm, m_extent - m0), n0, min(tn, pn - n0), k0, min(tk, pk - k0)

    exts = [extents(step) for step in steps]
    a_slot = b_slot = acc_slot = -1
    a_slots: list[int] = []
    b_slots: list[int] = []
    acc_slots: list[int] = []
    loads: list[tuple[Transfer | None, Transfer | None]] = []
    for s, step in enumerate(steps):
        mi, ni, ki = step
        m0, tm_e, n0, tn_e, k0, tk_e = exts[s]
        load_a = load_b = None
        if s == 0 or (mi, ki) != (steps[s - 1][0], steps[s - 1][2]):
            a_slot = (a_slot + 1) % 2
            if os_flow:
                load_a = Transfer(ext_base=(m0 // R) * gemm.k + k0, ext_stride=gemm.k,
                                  spad_base=a_slot * a_half, spad_stride=tk_e,
                                  bursts=tm_e // R, length=tk_e)
            else:
                load_a = Transfer(ext_base=(k0 // R) * gemm.m + m0, ext_stride=gemm.m,
                                  spad_base=a_slot * a_half, spad_stride=tm_e,
                                  bursts=tk_e // R, length=tm_e)
        if s == 0 or (ki, ni) != (steps[s - 1][2], steps[s - 1][1]):
            b_slot = (b_slot + 1) % 2
            load_b = Transfer(ext_base=(n0 // C) * pk + k0, ext_stride=pk,
                              spad_base=b_slot * b_half, spad_stride=tk_e,
                              bursts=tn_e // C, length=tk_e)
        if ki == 0:
            acc_slot = (acc_slot + 1) % 2
        a_slots.append(a_slot)
        b_slots.append(b_slot)
        acc_slots.append(acc_slot)
        loads.append((load_a, load_b))

    def compute(s: int) -> Compute:
        m0, tm_e, n0, tn_e, k0, tk_e = exts[s]
        if os_flow:
            shape = (tm_e // R, tn_e // C, tk_e)
        else:
            shape = (tn_e // C, tk_e // R, tm_e)
        return _copy(_COMPUTE, {"a_base": a_slots[s] * a_half, "b_base": b_slots[s] * b_half,
                                "acc_base": acc_slots[s] * acc_half, "outer": shape[0],
                                "inner": shape[1], "length": shape[2],
                                "overwrite": steps[s][2] == 0})

    def store(s: int) -> Transfer:
        m0, tm_e, n0, tn_e, k0, tk_e = exts[s]
        length = min(tm_e, gemm.m - m0)
        if os_flow and tn_e == C and length == tm_e and tm_e > R:
            # one n block: a burst per m block, so each starts as soon as its array tile is
            # drained (os drains the tile m block by m block) instead of after the last one
            return Transfer(ext_base=m0 + (n0 // C) * gemm.m, ext_stride=R,
                            spad_base=acc_slots[s] * acc_half, spad_stride=R,
                            bursts=tm_e // R, length=R, shift=out_shift)
        return Transfer(ext_base=(n0 // C) * gemm.m + m0, ext_stride=gemm.m,
                        spad_base=acc_slots[s] * acc_half, spad_stride=tm_e,
                        bursts=tn_e // C, length=length, shift=out_shift)

    last_k = counts["k"] - 1
    program = Program(layout=layout(params, gemm), repeats=repeats)
    for j in range(len(steps) + 2):
        load_a, load_b = loads[j] if j < len(steps) else (None, None)
        program.instructions.append(_copy(_INSTRUCTION, {
            "compute": compute(j - 1) if 1 <= j <= len(steps) else None,
            "load_a": load_a,
            "load_b": load_b,
            "store_c": store(j - 2) if j >= 2 and steps[j - 2][2] == last_k else None,
        }))
    if not os_flow:
        program.instructions = mark_preloads(params, program.instructions)
    program.instructions = mark_store_waits(params, program.instructions)
    if len(steps) >= 2 and split_ends is not False:
        # Split ends shorten fill and drain on most layers but cost instruction overhead on
        # short ones: keep whichever program the timing model says is faster.
        from hwloop.sim.systolic.model import WalkTrace, program_cycles  # the model walks

        plain = program.instructions
        trace = WalkTrace()
        plain_cycles = program_cycles(params, plain, actions=False, trace=trace,
                                      repeats=repeats)[0]
        program.cycles = plain_cycles
        if os_flow:
            split = _split_ends(params, gemm, plain)
            timed = [(_split_cycles(params, plain, trace, split, repeats), 0, split)]
        else:
            timed = _timed_ws_pieces(params, plain, trace, repeats)
        if timed:  # the best split, and that split with a streaming start
            best = min(timed, key=lambda t: t[:2])
            streamed = _stream_first(params, best[2])
            if streamed is not None:
                cycles = _split_cycles(params, plain, trace, streamed, repeats)
                best = min(best, (cycles, len(timed), streamed), key=lambda t: t[:2])
            if split_ends or best[0] < plain_cycles:
                program.cycles, program.instructions = best[0], best[2]
                program.repeats = _split_repeats(plain, best[2], repeats)
    marked = program.instructions if ahead is False \
        else mark_ahead(params, program.instructions)
    if marked is not program.instructions and ahead:
        program.instructions, program.cycles = marked, None
    elif marked is not program.instructions:
        # a following ws compute has the longer tile period of a streaming one: keep
        # whichever program the model says is faster
        from hwloop.sim.systolic.model import program_cycles

        if program.cycles is None:
            program.cycles = program_cycles(params, program.instructions, actions=False,
                                            repeats=program.repeats)[0]
        cycles = program_cycles(params, marked, actions=False, repeats=program.repeats)[0]
        if cycles < program.cycles:
            program.instructions, program.cycles = marked, cycles
    return program


def mark_ahead(params, instrs: list[Instruction]) -> list[Instruction]:
    """``ahead`` on each instruction that loads only A rows which the next instruction's
    compute reads in the order they are written, and ``follow`` on that next one: the loads'
    latency then hides under the next compute instead of ending the instruction. The compute
    reads its A rows from ``a_base`` on, ``length`` rows per array tile (ws: one n block,
    its k blocks in order; os: a single tile); the load writes contiguous bursts from there.
    Only designs with ``read_ahead`` have the hardware for it."""
    if not params.read_ahead:
        return instrs
    out = None
    for j in range(len(instrs) - 1):
        cur, nxt = instrs[j], instrs[j + 1]
        la, c = cur.load_a, nxt.compute
        if (la is None or cur.load_b is not None or cur.stream or c is None or nxt.stream
                or la.spad_base != c.a_base or (la.bursts > 1 and la.spad_stride != la.length)):
            continue
        if params.dataflow == "os":
            if c.outer != 1 or c.inner != 1 or la.rows < c.length:
                continue
        elif c.outer != 1 or la.rows < c.inner * c.length:
            continue
        if out is None:
            out = list(instrs)
        out[j] = _copy(out[j], {"ahead": True})
        out[j + 1] = _copy(out[j + 1], {"follow": True})
    return instrs if out is None else out


def mark_store_waits(params, instrs: list[Instruction]) -> list[Instruction]:
    """Let each store start on the array tiles already drained, burst by burst.

    A store that reads exactly the accumulator rows of the last compute before it, one burst
    per n block of that compute, waits per burst for the tiles of its n block instead of the
    whole drain. os drains tiles m block by m block, n blocks inside (tile ``o*inner + i``
    writes rows ``acc_base + i*outer*rows + o*rows ..``): n block ``b`` is complete after tile
    ``(outer-1)*inner + b``; a store of a single n block may instead have a burst per m block,
    complete after tile ``b``. ws drains n block by n block, k blocks inside (tile
    ``o*inner + i`` accumulates into rows ``acc_base + o*length ..``): n block ``b`` is final
    after tile ``(b+1)*inner - 1``. An os store whose every burst is one whole tile is stored
    in drain order (``in_drain_order``). Any other store keeps waiting for the whole drain.
    """
    R = params.rows
    os_flow = params.dataflow == "os"
    out: list[Instruction] = []
    last: Compute | None = None
    for instr in instrs:
        t = instr.store_c
        if t is not None:
            first = step = 0
            ordered = False
            if (last is not None and t.spad_base == last.acc_base and os_flow
                    and last.inner == 1 and t.length == R and t.spad_stride == R
                    and t.bursts <= last.outer):
                first, step, ordered = 1, 1, True  # a burst per m block: tile b has burst b
            elif last is not None and t.spad_base == last.acc_base:
                block = last.outer * R if os_flow else last.length
                blocks = last.inner if os_flow else last.outer
                if ((t.bursts == 1 or t.spad_stride == block) and t.length <= block
                        and t.bursts <= blocks):
                    if os_flow:
                        first, step = (last.outer - 1) * last.inner + 1, 1
                        ordered = last.outer == 1 and t.length == R
                    else:
                        first, step = last.inner, last.inner
            if (t.wait_first, t.wait_step, t.in_drain_order) != (first, step, ordered):
                instr = replace(instr, store_c=replace(t, wait_first=first, wait_step=step,
                                                       in_drain_order=ordered))
        out.append(instr)
        if instr.compute is not None:
            last = instr.compute
    return out


def _store_waits_at_ends(params, head: list[Instruction], middle: list[Instruction],
                         tail: list[Instruction]) -> list[Instruction]:
    """``mark_store_waits`` of ``head + middle + tail`` where ``middle`` is a run of a marked
    program whose instructions all compute: a store's marks depend only on the last compute
    before it, so only the ends and the first of the middle can change (the chooser builds
    split programs for every candidate mapping; marking them whole was O(program))."""
    if len(middle) < 2:
        return mark_store_waits(params, head + middle + tail)
    start = mark_store_waits(params, head + middle[:1])
    end = mark_store_waits(params, middle[-1:] + tail)[1:]
    return start + middle[1:] + end


def _split_repeats(plain: list[Instruction], split: list[Instruction],
                   repeats: tuple[Repeat, ...]) -> tuple[Repeat, ...]:
    """The repeats of a split program made from the compact ``plain``: it keeps ``plain``'s
    instructions from ``plain[3]`` to ``plain[-4]`` (the repeats lie among them), moved by
    its new head."""
    if not repeats:
        return ()
    head = next(i for i, x in enumerate(split) if x is plain[3])
    return shifted(repeats, head - 3)


def _split_cycles(params, plain: list[Instruction], trace: WalkTrace,
                  split: list[Instruction], repeats: tuple[Repeat, ...] = ()) -> int:
    """Model cycles of ``split``, which keeps ``plain[2:-2]`` (walked in ``trace``); its first
    kept instruction may differ in its store's wait marks (its last compute is a different
    one), then the shared run starts at ``plain[3]``. ``repeats``: those of a compact
    ``plain``."""
    from hwloop.sim.systolic.model import program_cycles, program_items, spliced_cycles

    split_repeats = _split_repeats(plain, split, repeats)
    # the walk's items: the repeats lie after plain[3] (and split's after its copy), so the
    # items up to there are the instructions, at the same indices
    plain_items = program_items(plain, repeats)
    split_items = program_items(split, split_repeats)
    for start in (2, 3):
        middle = len(plain_items) - 2 - start
        if middle <= 0:
            break
        head = next((i for i, x in enumerate(split) if x is plain[start]), None)
        if head is not None and \
                split_items[head:head + middle] == plain_items[start:start + middle]:
            return spliced_cycles(params, split_items, head, middle, trace, plain_start=start)
    return program_cycles(params, split, actions=False, repeats=split_repeats)[0]


def _writes_rows(t: Transfer | None, lo: int, hi: int) -> bool:
    """Whether transfer ``t`` writes any scratchpad row in ``[lo, hi)``. Its bursts start
    ``spad_stride`` rows apart, in increasing order, so the first burst that ends after ``lo``
    decides: it overlaps if it starts before ``hi``, and every later one starts later still
    (constant time: the program builder asks once per instruction of every candidate)."""
    if t is None or t.bursts == 0 or t.length == 0 or hi <= lo:
        return False
    base, stride = t.spad_base, t.spad_stride
    if t.bursts == 1 or stride == 0:
        return base < hi and lo < base + t.length
    first = max(0, (lo - t.length - base) // stride + 1)  # ends after lo
    return first < t.bursts and base + first * stride < hi


def mark_preloads(params, instrs: list[Instruction]) -> list[Instruction]:
    """ws: ``preload_next`` on exactly the instructions whose compute is followed by a compute
    whose first tile's weight rows (``rows`` rows from its b base) this instruction's DMA does
    not write: they are in the scratchpad before this instruction starts, so its last tile can
    load them into the array (the weight prologue of the next compute is hidden). Where this
    instruction's weight load writes them, ``preload_next_when_loaded`` instead."""
    R = params.rows
    out = list(instrs)
    for j in range(len(out)):
        cur = out[j]
        nxt = out[j + 1] if j + 1 < len(out) else Instruction()
        safe = when_loaded = False
        if cur.compute is not None and nxt.compute is not None:
            lo, hi = nxt.compute.b_base, nxt.compute.b_base + R
            safe = not _writes_rows(cur.load_b, lo, hi)
            when_loaded = not safe
        if (cur.preload_next, cur.preload_next_when_loaded) != (safe, when_loaded):
            out[j] = _copy(cur, {"preload_next": safe, "preload_next_when_loaded": when_loaded})
    return out


def _part(t: Transfer, first: int, bursts: int) -> Transfer:
    """Bursts ``first .. first+bursts-1`` of ``t`` as a transfer of their own."""
    return replace(t, ext_base=t.ext_base + first * t.ext_stride,
                   spad_base=t.spad_base + first * t.spad_stride, bursts=bursts)


def _joined(t: Transfer | None, u: Transfer | None) -> Transfer | None:
    """``t`` followed by ``u`` as one transfer, if ``u`` continues ``t``'s bursts."""
    if t is None or u is None:
        return t if u is None else None
    if (u.length, u.ext_stride, u.spad_stride) != (t.length, t.ext_stride, t.spad_stride) \
            or u.ext_base != t.ext_base + t.bursts * t.ext_stride \
            or u.spad_base != t.spad_base + t.bursts * t.spad_stride:
        return None
    return replace(t, bursts=t.bursts + u.bursts)


def _stream_first(params, split: list[Instruction]) -> list[Instruction] | None:
    """The split program with its first two instructions as one streaming instruction: the
    first compute (os: one array tile; ws: one n block) works on its operand rows as they
    arrive. None where the second instruction's loads do not continue the first's."""
    first, second = split[0], split[1]
    c = second.compute
    if first.compute is not None or c is None or c.outer != 1 \
            or (params.dataflow == "os" and c.inner != 1) \
            or first.load_a is None or first.load_b is None or second.store_c is not None:
        return None
    load_a, load_b = _joined(first.load_a, second.load_a), _joined(first.load_b, second.load_b)
    if load_a is None or load_b is None:
        return None
    streamed = Instruction(compute=c, load_a=load_a, load_b=load_b, stream=True)
    if params.dataflow == "ws":  # its own load now writes the next compute's first weights
        streamed = mark_preloads(params, [streamed, *split[2:3]])[0]
    return [streamed, *split[2:]]


def _split_ends(params, gemm: Gemm, instrs: list[Instruction]) -> list[Instruction]:
    """os: shorten the pipeline fill and drain around the first and last scratchpad tile.

    Prologue: load only the first m block of A and n block of B, then compute the first column
    of array tiles one tile per instruction while the other blocks load, then the remaining
    columns with the second tile's loads. Epilogue: compute the last tile's columns but the
    last, then its last column one array tile per instruction, each instruction storing what
    the previous one finished, so only one array tile's sums are stored after the last compute.
    Column splits keep the accumulator layout (row ``acc_base + i*outer*rows + o*rows``).
    ``instrs`` is a marked program; the result's store waits are marked too.
    """
    R = params.rows
    head, tail = instrs[:2], instrs[-2:]
    first, comp = head[0], head[1].compute
    assert comp is not None and first.load_a is not None and first.load_b is not None
    O, N = comp.outer, comp.inner

    def tile(c: Compute, o: int, i: int) -> Compute:
        return replace(c, a_base=c.a_base + o * c.length, b_base=c.b_base + i * c.length,
                       acc_base=c.acc_base + (i * c.outer + o) * R, outer=1, inner=1)

    def columns(c: Compute, i0: int, count: int) -> Compute:
        return replace(c, b_base=c.b_base + i0 * c.length,
                       acc_base=c.acc_base + i0 * c.outer * R, inner=count)

    pro: list[Instruction] = [Instruction(load_a=_part(first.load_a, 0, 1),
                                          load_b=_part(first.load_b, 0, 1))]
    rest_loads: list[tuple[Transfer | None, Transfer | None]] = [
        (_part(first.load_a, o, 1), None) for o in range(1, O)]
    if N > 1:
        rest_loads.append((None, _part(first.load_b, 1, 1)))
    next_loads = (head[1].load_a, head[1].load_b)
    for o in range(O):
        load_a, load_b = rest_loads[o] if o < len(rest_loads) else (None, None)
        if N == 1 and o == O - 1:
            load_a, load_b = next_loads
        pro.append(Instruction(compute=tile(comp, o, 0), load_a=load_a, load_b=load_b))
    if N > 2:  # column 1 alone while the remaining B blocks load
        pro.append(Instruction(compute=columns(comp, 1, 1), load_b=_part(first.load_b, 2, N - 2)))
    if N > 1:
        pro.append(Instruction(compute=columns(comp, min(2, N - 1), N - min(2, N - 1)),
                               load_a=next_loads[0], load_b=next_loads[1]))

    last, final = tail[0].compute, tail[1].store_c
    assert last is not None and final is not None
    O, N = last.outer, last.inner  # the last tile may be a partial one
    pieces: list[tuple[Compute, Transfer]] = []
    if N > 2:
        pieces.append((columns(last, 0, N - 2), _part(final, 0, N - 2)))
    if N > 1:
        pieces.append((columns(last, N - 2, 1), _part(final, N - 2, 1)))
    if N == 1 and final.length == R and final.spad_stride == R:
        tile_stores = [_part(final, o, 1) for o in range(O)]  # a burst per m block already
    else:
        col = _part(final, N - 1, 1)
        tile_stores = [replace(col, ext_base=col.ext_base + o * R,
                               spad_base=col.spad_base + o * R,
                               length=min(R, col.length - o * R)) for o in range(O)]
    for o in range(O):
        pieces.append((tile(last, o, N - 1), tile_stores[o]))
    epi: list[Instruction] = []
    prev_store = tail[0].store_c
    for c, s in pieces:
        epi.append(Instruction(compute=c, store_c=prev_store))
        prev_store = s
    epi.append(Instruction(store_c=prev_store))
    return _store_waits_at_ends(params, pro, instrs[2:-2], epi)


#: k blocks per compute instruction while the rest of the first ws tile loads.
_WS_GROUPS = (1, 2, 4, 8)


def _timed_ws_pieces(params, plain: list[Instruction], trace: WalkTrace,
                     repeats: tuple[Repeat, ...] = ()
                     ) -> list[tuple[int, int, list[Instruction]]]:
    """(model cycles, candidate number, program) of ``_split_ends_ws_pieces`` with pieces of 1,
    2, 4, 8 k blocks, trying larger pieces only while they keep getting faster (on 447 random
    ws layers this found the best of the four 445 times with half the model calls); ``trace``
    is the walk of ``plain`` (``program_cycles(trace=)``)."""
    timed: list[tuple[int, int, list[Instruction]]] = []
    for group in _WS_GROUPS:
        split = _split_ends_ws_pieces(params, plain, group)
        if split is None:
            break
        cycles = _split_cycles(params, plain, trace, split, repeats)
        timed.append((cycles, len(timed), split))
        if len(timed) >= 2 and cycles >= timed[-2][0]:
            break
    return timed


def _split_ends_ws_pieces(params, instrs: list[Instruction],
                          group: int) -> list[Instruction] | None:
    """ws: shorten the pipeline fill and drain around the first and last scratchpad tile.

    Fill: the first instruction loads only the first k block of A and the first two k blocks
    of weights of the first n block; the first n block is then computed ``group`` k blocks
    per instruction while each instruction loads the A and weight rows of the piece after
    next (so every piece's weights are loaded two instructions ahead and preloaded), then the
    other n blocks (whose weights the last piece loads) with the second tile's loads. Drain:
    the last tile's n blocks but the last, then its last n block, each instruction storing
    what the previous one finished, so one n block's sums are stored after the last compute.
    Returns None when the pieces would not be shorter (a single k block and n block).
    ``instrs`` is a marked program; the result's preloads and store waits are marked too.
    """
    R = params.rows
    first, head = instrs[0], instrs[1]
    comp = head.compute
    assert comp is not None and first.load_a is not None and first.load_b is not None
    la, lb = first.load_a, first.load_b
    O, N, L = comp.outer, comp.inner, comp.length
    if N <= group and O == 1:
        return None

    def a_blocks(i0: int, count: int) -> Transfer | None:
        count = min(count, N - i0)
        return _part(la, i0, count) if count > 0 else None

    def b_rows(o: int, i0: int, count: int) -> Transfer | None:
        count = min(count, N - i0)
        if count <= 0:
            return None
        return replace(lb, ext_base=lb.ext_base + o * lb.ext_stride + i0 * R,
                       spad_base=lb.spad_base + o * lb.spad_stride + i0 * R, bursts=1,
                       length=count * R)

    pro = [Instruction(load_a=a_blocks(0, group), load_b=b_rows(0, 0, 2 * group))]
    starts = list(range(0, N, group))
    for n, i0 in enumerate(starts):
        nxt = i0 + group
        load_a, load_b = a_blocks(nxt, group), b_rows(0, nxt + group, group)
        if n == len(starts) - 1:
            load_a, load_b = ((None, _part(lb, 1, O - 1)) if O > 1
                              else (head.load_a, head.load_b))
        piece = replace(comp, a_base=comp.a_base + i0 * L, b_base=comp.b_base + i0 * R,
                        outer=1, inner=min(group, N - i0), overwrite=comp.overwrite and i0 == 0)
        pro.append(Instruction(compute=piece, load_a=load_a, load_b=load_b))
    if O > 1:
        pro.append(Instruction(compute=replace(comp, b_base=comp.b_base + N * R,
                                               acc_base=comp.acc_base + L, outer=O - 1),
                               load_a=head.load_a, load_b=head.load_b))

    last, final = instrs[-2].compute, instrs[-1].store_c
    assert last is not None and final is not None
    O, N, L = last.outer, last.inner, last.length
    epi: list[Instruction] = []
    if O > 1:
        pieces = [(replace(last, outer=O - 1), _part(final, 0, O - 1)),
                  (replace(last, b_base=last.b_base + (O - 1) * N * R,
                           acc_base=last.acc_base + (O - 1) * L, outer=1),
                   _part(final, O - 1, 1))]
        prev_store = instrs[-2].store_c
        for c, st in pieces:
            epi.append(Instruction(compute=c, store_c=prev_store))
            prev_store = st
        epi.append(Instruction(store_c=prev_store))
    else:
        epi = instrs[-2:]
    if len(instrs) <= 5:
        return mark_store_waits(params, mark_preloads(params, pro + instrs[2:-2] + epi))
    # only the flags next to the new instructions change (each depends on its successor)
    head = mark_preloads(params, pro + instrs[2:3])[:-1]
    tail = mark_preloads(params, instrs[-3:-2] + epi)
    return _store_waits_at_ends(params, head, instrs[2:-3], tail)
