"""The co-simulation harness: accelerator + external memory model + job files.

The harness top (Verilog) holds the instruction memory and the A, B and C external memories.
A read request returns a beat of as many consecutive rows as fit in ``bus_bytes``,
``mem_latency + 1`` cycles after the request (registered into a ring of ``mem_latency + 1``
beats). Memories are loaded in bulk with ``$readmemh`` when ``load`` is pulsed
and C is written back with ``$writememh`` when ``dump`` is pulsed, so Python never touches a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwloop.errors import ParameterError
from hwloop.hdl.systolic.accelerator import COUNTERS
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.mapping import (
    Gemm,
    Mapping,
    check_mapping,
    elem_bytes,
    out_field_bits,
    padded_dims,
)
from hwloop.sim.systolic.program import (
    INSTRUCTION_BITS,
    Program,
    build_program,
    encode,
    rows_per_beat,
)

HARNESS_TOP = "hwloop_systolic_harness"
INSTR_DEPTH = 1 << 16
#: Each external memory gets the largest power-of-two depth within this many bytes.
MEMORY_BUDGET_BYTES = 32 << 20
MAX_DEPTH = 1 << 22

FILES = {"instr": "hw_instr.hex", "a": "hw_a.hex", "b": "hw_b.hex", "c": "hw_c.hex"}


def row_bits(params: SystolicParams) -> dict[str, int]:
    return {"a": params.rows * params.in_bits, "b": params.cols * params.in_bits,
            "c": params.cols * out_field_bits(params)}


def beat_rows(params: SystolicParams) -> dict[str, int]:
    """Rows per read beat of the A and B channels (as many as fit in the bus)."""
    e = elem_bytes(params)
    return {"a": rows_per_beat(params.rows * e, params.bus_bytes),
            "b": rows_per_beat(params.cols * e, params.bus_bytes)}


def memory_depths(params: SystolicParams) -> dict[str, int]:
    depths = {}
    for name, bits in row_bits(params).items():
        row_bytes = -(-bits // 8)
        depth = 1 << max(10, (MEMORY_BUDGET_BYTES // row_bytes).bit_length() - 1)
        depths[name] = min(depth, MAX_DEPTH)
    return depths


def harness_verilog(params: SystolicParams, *, files: dict[str, str] = FILES,
                    reset_pipes: bool = False) -> str:
    """The harness top; ``files``: the memory images it loads (``instr``, ``a``, ``b``) and the
    C it dumps (``c``). ``reset_pipes``: the read responses' valid pipelines are cleared while
    the accelerator is in reset, so a request made before its first reset edge (X where the
    registers have no initial values, as in a gate-level netlist) is never answered."""
    bits = row_bits(params)
    depth = memory_depths(params)
    lat = params.mem_latency
    counters = "\n".join(f"  wire [63:0] cnt_{n};" for n in COUNTERS)
    counter_ports = ",\n".join(f"    .cnt_{n}(cnt_{n})" for n in COUNTERS)

    beat = beat_rows(params)

    def pipe(ch: str) -> str:
        # a ring of lat + 1 beats: each cycle writes one slot (only with a request: the
        # response of a cycle without one is not valid, and the simulator skips the wide read)
        # and the slot written lat cycles earlier is the response. A shift register would copy
        # every stage's beat each cycle (and a for loop over an unpacked array queues each
        # element's non-blocking update)
        w = bits[ch] * beat[ch]
        abits = (depth[ch] - 1).bit_length()
        pbits = max(1, lat.bit_length())
        rows = ", ".join(f"{ch}mem[{ch}_req_addr[{abits - 1}:0] + {abits}'d{i}]"
                         for i in reversed(range(beat[ch])))
        valid_in = f"{{{ch}_v[{lat - 1}:0], {ch}_req_valid}}" if lat else f"{ch}_req_valid"
        if reset_pipes:
            valid_in = f"rst_q ? {lat + 1}'d0 : {valid_in}"
        return f"""
  reg [{w - 1}:0] {ch}_ring [0:{lat}];
  reg [{lat}:0] {ch}_v = {lat + 1}'d0;
  reg [{pbits - 1}:0] {ch}_slot = {pbits}'d0;
  always @(posedge clk) begin
    if ({ch}_req_valid) {ch}_ring[{ch}_slot] <= {{{rows}}};
    {ch}_v <= {valid_in};
    {ch}_slot <= {ch}_slot == {pbits}'d{lat} ? {pbits}'d0 : {ch}_slot + {pbits}'d1;
  end
  assign {ch}_resp_valid = {ch}_v[{lat}];
  assign {ch}_resp_data = {ch}_ring[{ch}_slot];
"""

    return f"""`timescale 1ns/1ps
// Co-simulation harness for {params.name}: external memory (latency {lat} + 1 cycles),
// instruction memory, bulk load/dump through $readmemh/$writememh.
module {HARNESS_TOP} (
  // driven by the simulator's main (sim/clocked_main.cpp): cocotb only wakes up on events it
  // waits for (done), never on clock edges
  input wire clk
);
  reg rst = 1'b1;
  reg start = 1'b0;
  reg load = 1'b0;
  reg dump = 1'b0;
  reg [31:0] n_instr = 32'd0;
  // what cocotb writes reaches the accelerator through a register: combinational logic
  // behind a VPI-writable signal would be re-evaluated on every half cycle (~10% slower)
  reg rst_q = 1'b1;
  reg start_q = 1'b0;
  reg [31:0] n_instr_q = 32'd0;
  always @(posedge clk) begin
    rst_q <= rst;
    start_q <= start;
    n_instr_q <= n_instr;
  end
  reg [31:0] c_rows = 32'd1;
  wire busy, done;
  wire [31:0] instr_addr;
  reg [{INSTRUCTION_BITS - 1}:0] instr_q;
  reg [{INSTRUCTION_BITS - 1}:0] imem [0:{INSTR_DEPTH - 1}];
  reg [{bits["a"] - 1}:0] amem [0:{depth["a"] - 1}];
  reg [{bits["b"] - 1}:0] bmem [0:{depth["b"] - 1}];
  reg [{bits["c"] - 1}:0] cmem [0:{depth["c"] - 1}];
  wire a_req_valid, b_req_valid, c_wr_valid;
  wire [31:0] a_req_addr, b_req_addr, c_wr_addr;
  wire a_resp_valid, b_resp_valid;
  wire [{bits["a"] * beat["a"] - 1}:0] a_resp_data;
  wire [{bits["b"] * beat["b"] - 1}:0] b_resp_data;
  wire [{bits["c"] - 1}:0] c_wr_data;
{counters}

  always @(posedge clk) begin
    instr_q <= imem[instr_addr[{INSTR_DEPTH.bit_length() - 2}:0]];
    if (c_wr_valid) cmem[c_wr_addr[{(depth["c"] - 1).bit_length() - 1}:0]] <= c_wr_data;
    if (load) begin
      $readmemh("{files["instr"]}", imem);
      $readmemh("{files["a"]}", amem);
      $readmemh("{files["b"]}", bmem);
    end
    if (dump) $writememh("{files["c"]}", cmem, 0, c_rows - 1);
  end
{pipe("a")}{pipe("b")}
  {params.name} accelerator (
    .clk(clk), .rst(rst_q), .start(start_q), .n_instr(n_instr_q), .busy(busy), .done(done),
    .instr_addr(instr_addr), .instr_data(instr_q),
    .a_req_valid(a_req_valid), .a_req_addr(a_req_addr), .a_resp_valid(a_resp_valid),
    .a_resp_data(a_resp_data),
    .b_req_valid(b_req_valid), .b_req_addr(b_req_addr), .b_resp_valid(b_resp_valid),
    .b_resp_data(b_resp_data),
    .c_wr_valid(c_wr_valid), .c_wr_addr(c_wr_addr), .c_wr_data(c_wr_data),
{counter_ports}
  );
endmodule
"""


def _hex_lines(packed: np.ndarray) -> str:
    """One fixed-width hex line per row of big-endian bytes, without a Python loop per row."""
    rows, nbytes = packed.shape
    chars = np.frombuffer(np.ascontiguousarray(packed).tobytes().hex().encode("ascii"),
                          dtype=np.uint8).reshape(rows, 2 * nbytes)
    lines = np.empty((rows, 2 * nbytes + 1), dtype=np.uint8)
    lines[:, :-1] = chars
    lines[:, -1] = ord("\n")
    return lines.tobytes().decode("ascii")


def pack_rows(values: np.ndarray, bits: int) -> str:
    """Hex lines (``$readmemh``) of rows of signed ``bits``-bit fields, field 0 in the LSBs."""
    values = np.asarray(values, dtype=np.int64)
    rows, n = values.shape
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    fields = values.astype(np.uint64) & mask
    if bits % 8 == 0:
        # byte-aligned fields (8/16/32/64 bits): the row is the fields' little-endian bytes,
        # reversed into one big-endian number
        le = np.ascontiguousarray(fields, dtype="<u8").view(np.uint8)
        le = le.reshape(rows, n, 8)[:, :, : bits // 8]
        return _hex_lines(le.reshape(rows, n * (bits // 8))[:, ::-1])
    shifts = np.arange(bits, dtype=np.uint64)
    bitmat = ((fields[:, :, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    flat = bitmat.reshape(rows, n * bits)[:, ::-1]
    pad = (-(n * bits)) % 8
    if pad:
        flat = np.pad(flat, ((0, 0), (pad, 0)))
    return _hex_lines(np.packbits(flat, axis=1))


def _read_hex_rows(path: Path, rows: int, nbytes: int) -> np.ndarray:
    """The first ``rows`` lines of a ``$writememh`` file as big-endian bytes (rows, nbytes)."""
    text = path.read_text()
    joined = None
    if not any(c in text for c in "/@xXzZ"):
        # the usual dump: plain fixed-width lines
        lines = text.split(None, rows)[:rows]
        if len(lines) == rows and all(len(ln) == 2 * nbytes for ln in (lines[0], lines[-1])):
            joined = "".join(lines)
            if len(joined) != rows * 2 * nbytes:
                joined = None
    if joined is None:
        lines = [ln.strip() for ln in text.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("//") and not ln.startswith("@")]
        if len(lines) < rows:
            raise ValueError(f"{path} has {len(lines)} rows, expected {rows}")
        joined = "".join(ln.lower().replace("x", "0").replace("z", "0").rjust(2 * nbytes, "0")
                         for ln in lines[:rows])
    return np.frombuffer(bytes.fromhex(joined), dtype=np.uint8).reshape(rows, nbytes)


def unpack_rows(path: Path, rows: int, n: int, bits: int) -> np.ndarray:
    """Signed fields of the first ``rows`` hex lines of a ``$writememh`` file."""
    nbytes = -(-(n * bits) // 8)
    packed = _read_hex_rows(path, rows, nbytes)
    if bits % 8 == 0:
        le = packed[:, ::-1].reshape(rows, n, bits // 8)
        buf = np.zeros((rows, n, 8), dtype=np.uint8)
        buf[:, :, : bits // 8] = le
        fields = buf.view("<u8").reshape(rows, n).astype(np.int64)
    else:
        flat = np.unpackbits(packed, axis=1)[:, ::-1][:, : n * bits]  # LSB first
        weights = (np.uint64(1) << np.arange(bits, dtype=np.uint64))
        fields = (flat.reshape(rows, n, bits).astype(np.uint64) * weights).sum(axis=2)
        fields = fields.astype(np.int64)
    sign = np.int64(1) << np.int64(bits - 1)
    if bits < 64:
        fields = (fields ^ sign) - sign
    return fields


def layout_a(params: SystolicParams, a: np.ndarray, padded: tuple[int, int, int]) -> np.ndarray:
    """A as external-memory rows (see program.Layout)."""
    pm, _, pk = padded
    m, k = a.shape
    R = params.rows
    if params.dataflow == "os":
        full = np.zeros((pm, k), np.int64)
        full[:m] = a
        return full.reshape(pm // R, R, k).transpose(0, 2, 1).reshape(-1, R)
    full = np.zeros((m, pk), np.int64)
    full[:, :k] = a
    return full.reshape(m, pk // R, R).transpose(1, 0, 2).reshape(-1, R)


def layout_b(params: SystolicParams, b: np.ndarray, padded: tuple[int, int, int]) -> np.ndarray:
    _, pn, pk = padded
    k, n = b.shape
    C = params.cols
    full = np.zeros((pk, pn), np.int64)
    full[:k, :n] = b
    return full.reshape(pk, pn // C, C).transpose(1, 0, 2).reshape(-1, C)


def layout_c(params: SystolicParams, c: np.ndarray, padded: tuple[int, int, int]) -> np.ndarray:
    """C as the external-memory rows the accelerator writes (the inverse of ``unlayout_c``):
    the columns that pad N to the array hold zeros, as the zero-padded B makes them."""
    _, pn, _ = padded
    m, n = c.shape
    C = params.cols
    full = np.zeros((m, pn), np.int64)
    full[:, :n] = c
    return full.reshape(m, pn // C, C).transpose(1, 0, 2).reshape(-1, C)


def unlayout_c(params: SystolicParams, rows: np.ndarray, m: int, n: int,
               padded: tuple[int, int, int]) -> np.ndarray:
    _, pn, _ = padded
    C = params.cols
    return rows.reshape(pn // C, m, C).transpose(1, 0, 2).reshape(m, pn)[:, :n]


@dataclass(frozen=True)
class JobImages:
    """What the accelerator needs to run one GEMM: its program and the ``$readmemh`` images of
    the instruction memory and of external A and B (rows as ``program.layout`` says)."""

    mapping: Mapping  # fitted to the GEMM
    program: Program
    instr_hex: str  # one INSTRUCTION_BITS-bit word a line
    a_hex: str | None  # None: the program alone
    b_hex: str | None


def check_operands(params: SystolicParams, gemm: Gemm, a: np.ndarray, b: np.ndarray, *,
                   what: str) -> None:
    """``a`` (m x k) and ``b`` (k x n) hold signed ``in_bits`` integers; ``what`` names them in
    the error."""
    if a.shape != (gemm.m, gemm.k) or b.shape != (gemm.k, gemm.n):
        raise ParameterError(
            f"{what}: operands {a.shape} x {b.shape} do not match gemm "
            f"m={gemm.m} n={gemm.n} k={gemm.k}")
    lo, hi = -(1 << (params.in_bits - 1)), (1 << (params.in_bits - 1)) - 1
    for name, operand in (("A", a), ("B", b)):
        if operand.size and (int(operand.min()) < lo or int(operand.max()) > hi):
            raise ParameterError(f"{what}: {name} has values outside the signed "
                                 f"{params.in_bits}-bit range {lo}..{hi}")


def job_images(params: SystolicParams, gemm: Gemm, mapping: Mapping, a: np.ndarray | None,
               b: np.ndarray | None, *, out_shift: int, what: str) -> JobImages:
    """The program and memory images of ``A @ B`` under ``mapping`` (fitted and checked here);
    the co-simulation runs exactly these, and ``hwloop compile systolic`` writes them. ``a``
    and ``b`` None: the program alone (it does not depend on the data)."""
    if a is not None or b is not None:
        check_operands(params, gemm, a, b, what=what)
    fitted = mapping.fit_to(params, gemm)
    check_mapping(params, gemm, fitted)
    program = build_program(params, gemm, fitted, out_shift=out_shift)
    padded = padded_dims(params, gemm)
    width = -(-INSTRUCTION_BITS // 4)
    return JobImages(
        mapping=fitted, program=program,
        instr_hex="".join(f"{encode(i):0{width}x}\n" for i in program.instructions),
        a_hex=None if a is None else pack_rows(layout_a(params, a, padded), params.in_bits),
        b_hex=None if b is None else pack_rows(layout_b(params, b, padded), params.in_bits))


#: The standalone testbench's top module (``standalone_testbench``).
STANDALONE_TOP = "hwloop_systolic_tb"


def standalone_testbench(params: SystolicParams, *, n_instr: int, c_rows: int, max_cycles: int,
                         settle: int, files: dict[str, str]) -> str:
    """A self-running Verilog top for a simulator with timing (tested with Verilator
    ``--binary --timing`` and Icarus Verilog ``-g2005``): the harness with ``files``, a clock,
    reset, one GEMM (``n_instr`` instructions, ``c_rows`` rows of C), the C dump ``settle``
    cycles after ``done``, and the hardware's cycle count printed. Inputs change on falling
    edges, so no register samples them in the cycle they change.

    The top writes C itself, one ``%h`` line per row (zero-padded to the row's width, lower
    case: the text of ``c.hex`` in every simulator), not through the harness's
    ``$writememh``, whose text is the simulator's: Icarus adds ``// 0x...`` address lines.
    Its memory model answers no request made before the accelerator's first reset edge."""
    return harness_verilog(params, files=files, reset_pipes=True) + f"""
module {STANDALONE_TOP};
  reg clk = 1'b0;
  always #5 clk = ~clk;
  {HARNESS_TOP} harness (.clk(clk));
  integer waited = 0;
  integer fd, row;
  initial begin
    @(negedge clk);
    harness.n_instr = 32'd{n_instr};
    harness.c_rows = 32'd{c_rows};
    @(negedge clk);
    harness.rst = 1'b0;
    harness.load = 1'b1;
    @(negedge clk);
    harness.load = 1'b0;
    harness.start = 1'b1;
    @(negedge clk);
    harness.start = 1'b0;
    @(negedge clk);
    while (!harness.done && waited < {max_cycles}) begin
      @(negedge clk);
      waited = waited + 1;
    end
    if (!harness.done) begin
      $display("hwloop tb: no done after %0d cycles", waited);
      $fatal(1);
    end
    $display("hwloop tb: done, cycles %0d (the accelerator's counter)", harness.cnt_cycles);
    repeat ({settle + 1}) @(negedge clk);
    fd = $fopen("{files["c"]}", "w");
    if (fd == 0) begin
      $display("hwloop tb: cannot write {files["c"]}");
      $fatal(1);
    end
    for (row = 0; row < {c_rows}; row = row + 1)
      $fwrite(fd, "%h\\n", harness.cmem[row]);
    $fclose(fd);
    $display("hwloop tb: C written to {files["c"]}");
    $finish;
  end
endmodule
"""
