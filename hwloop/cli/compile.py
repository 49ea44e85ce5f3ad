"""``hwloop compile systolic``: the program and memory images that run one GEMM on the IP.

``hwloop generate systolic`` gives the Verilog; its controller runs a whole tiled GEMM from an
instruction memory, reading A and B from and writing C to external memory. This command writes
what an integrator loads into those memories: the instruction words, and (given operands) the A
and B images and the C the accelerator will write, all as ``$readmemh`` files, plus
``program.json`` with the layouts, the mapping and the model's cycles and actions. They are the
files the co-simulation runs (``hwloop.sim.systolic.harness.job_images``), byte for byte.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from hwloop.cli import path_arg
from hwloop.cli.systolic import _int, add_param_arguments, params_from_args, parse_mapping
from hwloop.errors import InputError, ParameterError

#: How each external memory's rows hold the matrices (``program.Layout``); field 0 is in a
#: row's least significant bits, and padding elements are zero.
LAYOUTS = {
    ("a", "os"): "row mb*K + k holds A[mb*rows + i, k] in field i (m blocks of rows)",
    ("a", "ws"): "row kb*M + m holds A[m, kb*rows + i] in field i (k blocks of rows)",
    ("b", None): "row nb*Kp + k holds B[k, nb*cols + j] in field j (Kp: padded k)",
    ("c", None): "row nb*M + m holds C[m, nb*cols + j] in field j",
}


def register(sub: argparse._SubParsersAction) -> None:
    compile_ = sub.add_parser("compile", help="the program and memory images of a GEMM on a "
                                              "generated design")
    targets = compile_.add_subparsers(dest="target", metavar="DESIGN",
                                      parser_class=type(compile_))
    targets.required = True
    parser = targets.add_parser(
        "systolic", help="a GEMM on the systolic-array accelerator",
        description="Write DIR/program.hex (instruction memory) and DIR/program.json (layouts, "
                    "mapping, model cycles); with operands also DIR/a.hex, DIR/b.hex and the "
                    "C the accelerator writes, DIR/c.hex. All $readmemh files, the ones the "
                    "co-simulation runs.")
    add_param_arguments(parser)
    parser.add_argument("--gemm", metavar="MxNxK",
                        help="C[M,N] = A[M,K] B[K,N] (default: the operands' shapes)")
    parser.add_argument("--mapping", metavar="tile_m=..,tile_n=..,tile_k=..[,order=..]",
                        help="tiles and loop order (fit to the GEMM); default: chosen by the "
                             "model")
    parser.add_argument("--out-shift", dest="out_shift", type=_int, metavar="S",
                        help="requantization right shift (with --out-bits; default: chosen "
                             "from in_bits, k and out_bits)")
    operands = parser.add_argument_group("operands (optional: without them, the program only)")
    operands.add_argument("--a", type=path_arg, metavar="A.npy", help="A, M x K signed integers")
    operands.add_argument("--b", type=path_arg, metavar="B.npy", help="B, K x N signed integers")
    operands.add_argument("--seed", type=_int, metavar="S",
                          help="random full-range operands from this seed instead")
    parser.add_argument("--testbench", action="store_true",
                        help="also the design's Verilog and tb.v, a self-running testbench "
                             "(memory model, clock, the GEMM) that writes the C it reads back "
                             "to c_out.hex (tested with Verilator --binary --timing and Icarus "
                             "Verilog -g2005)")
    parser.add_argument("-o", "--output", required=True, type=path_arg, metavar="DIR",
                        help="output folder (replaced as a whole; never left half-written)")
    parser.set_defaults(func=run_compile)


def parse_gemm(text: str) -> Any:
    from hwloop.sim.systolic.mapping import Gemm

    parts = text.lower().split("x")
    try:
        m, n, k = (int(part) for part in parts)
    except ValueError:
        raise ParameterError(f"--gemm: expected MxNxK (three integers), not {text!r}") from None
    return Gemm(m=m, n=n, k=k)


def load_operand(path: Path, flag: str) -> np.ndarray:
    """A 2-D integer array from a ``.npy`` file (never unpickled)."""
    try:
        with open(path, "rb") as file:
            magic = file.read(6)
            # a pipe (<(...)) is drained by this read: np.load gets what it holds, in memory
            source = path if stat.S_ISREG(os.fstat(file.fileno()).st_mode) \
                else io.BytesIO(magic + file.read())
    except OSError as exc:
        raise InputError(f"{flag}: cannot read {str(path)!r}: "
                         f"{exc.strerror or exc}") from None
    if magic[:2] == b"PK":
        raise InputError(f"{flag}: {str(path)!r} is an .npz archive, not one .npy array")
    if magic != b"\x93NUMPY":
        raise InputError(f"{flag}: {str(path)!r} is not a .npy file")
    try:
        array = np.load(source, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(f"{flag}: {str(path)!r} holds Python objects: only numeric arrays "
                             "are read (never unpickled)") from None
        raise InputError(f"{flag}: {str(path)!r} is not a readable .npy array: "
                         f"{str(exc).splitlines()[0]}") from None
    except MemoryError as exc:  # its header may promise more than the file holds
        raise InputError(f"{flag}: {str(path)!r} is too large to load: "
                         f"{str(exc).splitlines()[0]}") from None
    if array.ndim != 2 or array.dtype.kind not in "iu":
        raise InputError(f"{flag}: {str(path)!r} must hold a 2-D array of integers, not "
                         f"{array.ndim}-D {array.dtype}")
    if array.dtype.kind == "u":  # uint64 past the int64 range would wrap into range
        array = np.minimum(array, np.iinfo(np.int64).max)
    return array.astype(np.int64)


def earlier_output(folder: Path) -> bool:
    """``folder`` holds what ``hwloop compile`` wrote and what running its testbench makes
    (``obj_dir``, ``tb.vvp``, ``c_out.hex``), nothing else: it may be replaced as a whole (a
    file the user added would be deleted with it)."""
    try:
        design = json.loads((folder / "program.json").read_text())["design"]
        names = {p.name for p in folder.iterdir()}
    except (OSError, ValueError, TypeError, KeyError):
        return False
    ours = {"program.json", "program.hex", "a.hex", "b.hex", "c.hex", f"{design}.v", "tb.v",
            "c_out.hex", "obj_dir", "tb.vvp"}
    return isinstance(design, str) and names <= ours


def run_compile(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    from hwloop import __version__
    from hwloop.manifest import write_folder_atomically
    from hwloop.sim.systolic.bounds import cycle_bounds
    from hwloop.sim.systolic.golden import random_operands, resolve_out_shift, stored_golden
    from hwloop.sim.systolic.harness import (
        INSTR_DEPTH,
        beat_rows,
        check_operands,
        job_images,
        layout_c,
        memory_depths,
        pack_rows,
        row_bits,
    )
    from hwloop.sim.systolic.mapping import (
        Gemm,
        check_mapping,
        default_mapping,
        out_field_bits,
        padded_dims,
    )
    from hwloop.sim.systolic.model import model_gemm
    from hwloop.sim.systolic.program import FIELD_BITS, INSTRUCTION_BITS, tile_counts
    from hwloop.sim.systolic.program import layout as memory_layout

    if (args.a is None) != (args.b is None):
        raise ParameterError("--a and --b go together (A and B)")
    if args.a is not None and args.seed is not None:
        raise ParameterError("--seed draws random operands: give it or --a/--b, not both")
    if args.testbench and args.a is None and args.seed is None:
        raise ParameterError("--testbench needs operands (--a/--b or --seed)")
    if args.seed is not None and args.seed < 0:
        raise ParameterError(f"--seed must be a non-negative integer, not {args.seed}")
    a = b = None
    if args.a is not None:
        a, b = load_operand(args.a, "--a"), load_operand(args.b, "--b")
    if args.gemm is not None:
        gemm = parse_gemm(args.gemm)
    elif a is not None:
        if a.shape[1] != b.shape[0]:
            raise ParameterError(f"--a is {a.shape[0]} x {a.shape[1]} and --b {b.shape[0]} x "
                                 f"{b.shape[1]}: B must have as many rows as A has columns")
        gemm = Gemm(m=a.shape[0], n=b.shape[1], k=a.shape[1])
    else:
        raise ParameterError("--gemm is needed without operands (--a/--b)")
    if a is not None:  # before a mapping is chosen for a GEMM they are not
        check_operands(params, gemm, a, b, what="--a/--b")
    needed = memory_layout(params, gemm)  # checked before any operand is drawn or laid out
    sizes = {"a": needed.a_rows, "b": needed.b_rows, "c": needed.c_rows}
    for name, rows_needed in sizes.items():
        if rows_needed > 1 << FIELD_BITS:
            raise ParameterError(
                f"gemm m={gemm.m} n={gemm.n} k={gemm.k} needs {rows_needed} rows of external "
                f"{name.upper()} memory, more than the accelerator's {FIELD_BITS}-bit row "
                f"addresses reach ({1 << FIELD_BITS})")
    if args.testbench:
        depths = memory_depths(params)
        for name, rows_needed in sizes.items():
            if rows_needed > depths[name]:
                raise ParameterError(
                    f"gemm m={gemm.m} n={gemm.n} k={gemm.k} needs {rows_needed} rows of "
                    f"external {name.upper()} memory, the testbench's holds {depths[name]}")
    mapping = parse_mapping(args.mapping) or default_mapping(params, gemm)
    shift = resolve_out_shift(params, gemm, args.out_shift)
    given = a is not None or args.seed is not None  # else the program alone: no data
    fitted = mapping.fit_to(params, gemm)
    check_mapping(params, gemm, fitted)
    # refused before a program of millions of instructions is built
    steps = math.prod(tile_counts(params, gemm, fitted).values())
    padded = padded_dims(params, gemm)
    images = c_hex = None
    if steps + 2 <= INSTR_DEPTH:
        try:
            if args.seed is not None:
                a, b = random_operands(gemm, in_bits=params.in_bits,
                                       rng=np.random.default_rng(args.seed))
            images = job_images(params, gemm, fitted, a, b, out_shift=shift, what="--a/--b")
            if given:
                c = stored_golden(a, b, params, shift=shift)
                packed = pack_rows(layout_c(params, c, padded), out_field_bits(params))
                # as $writememh writes the accelerator's C: as many digits as the row has
                # bits (pack_rows pads rows to whole bytes), so the two files compare equal
                digits = -(-row_bits(params)["c"] // 4)
                c_hex = "".join(f"{line[-digits:]}\n" for line in packed.splitlines())
        except MemoryError:
            raise ParameterError(f"gemm m={gemm.m} n={gemm.n} k={gemm.k}: its operands and "
                                 "memory images do not fit in this machine's memory") from None
    if images is None or len(images.program.instructions) > INSTR_DEPTH:
        count = steps + 2 if images is None else len(images.program.instructions)
        raise ParameterError(
            f"mapping {fitted.to_dict()} needs {'at least ' if images is None else ''}{count} "
            f"instructions, more than {INSTR_DEPTH} (the most it writes, as many as the "
            "testbench's instruction memory holds): use "
            "larger tiles")
    model = model_gemm(params, gemm, images.mapping)
    bits = row_bits(params)
    beats = beat_rows(params)
    field_bits = {"a": params.in_bits, "b": params.in_bits, "c": out_field_bits(params)}
    fields = {"a": params.rows, "b": params.cols, "c": params.cols}
    memories: dict[str, Any] = {"instr": {
        "file": "program.hex", "rows": len(images.program.instructions),
        "row_bits": INSTRUCTION_BITS}}
    for name in ("a", "b", "c"):
        memories[name] = {
            "file": f"{name}.hex" if given else None, "rows": sizes[name],
            "row_bits": bits[name], "fields": fields[name], "field_bits": field_bits[name],
            "layout": LAYOUTS.get((name, params.dataflow)) or LAYOUTS[(name, None)]}
        if name != "c":  # each element takes a byte (two above 8 bits) of the bus
            memories[name]["beat_rows"] = beats[name]
    description = {
        "design": params.name, "params": params.to_dict(),
        "gemm": {"m": gemm.m, "n": gemm.n, "k": gemm.k},
        # rounded up to the array's granules (the layouts' block counts; Kp)
        "padded": dict(zip("mnk", padded, strict=True)),
        # null for a design that writes raw sums, as sim --json's layers say it
        "mapping": images.mapping.to_dict(),
        "out_shift": shift if params.out_bits is not None else None,
        "n_instr": len(images.program.instructions),
        "memories": memories,
        "run": "load the memories, hold n_instr, pulse start for one cycle; done rises once "
               "the last C row is written. instr_data is the word at the instr_addr of the "
               "cycle before. An A or B read request (req_valid, req_addr: a row) is answered "
               "in order, mem_latency + 1 cycles later (the timing the model and these cycles "
               "assume), by one beat (resp_valid, resp_data) of the beat_rows rows from "
               "req_addr on, the first in the least significant bits (rows past a burst's "
               "end are ignored). C is written one row in each cycle of c_wr_valid "
               "(c_wr_addr, c_wr_data)",
        "model": {"cycles": model.cycles, "actions": dict(model.actions),
                  "bounds": cycle_bounds(params, model.actions)},
        "hwloop_version": __version__,
    }
    testbench = None
    if args.testbench:
        from hwloop.sim.systolic.harness import STANDALONE_TOP, standalone_testbench
        from hwloop.sim.systolic.rtl import cached_verilog, settle_cycles

        files = {"instr": "program.hex", "a": "a.hex", "b": "b.hex", "c": "c_out.hex"}
        testbench = standalone_testbench(
            params, n_instr=len(images.program.instructions), c_rows=sizes["c"],
            max_cycles=2 * model.cycles + 10_000, settle=settle_cycles(params), files=files)
        verilog = cached_verilog(params)
        sources = [f"{params.name}.v", "tb.v"]
        description["testbench"] = {
            "top": STANDALONE_TOP, "sources": sources, "writes": files["c"],
            "verilator": f"verilator --binary --timing -Wno-fatal --top-module {STANDALONE_TOP} "
                         f"{' '.join(sources)} && obj_dir/V{STANDALONE_TOP}",
            "iverilog": f"iverilog -g2005 -s {STANDALONE_TOP} -o tb.vvp {' '.join(sources)} "
                        "&& vvp -n tb.vvp",
            "expect": f"c_out.hex equal to c.hex, {model.cycles} cycles"}

    def fill(folder: Path) -> None:
        (folder / "program.hex").write_text(images.instr_hex)
        if given:
            (folder / "a.hex").write_text(images.a_hex)
            (folder / "b.hex").write_text(images.b_hex)
            (folder / "c.hex").write_text(c_hex)
        if testbench is not None:
            (folder / f"{params.name}.v").write_text(verilog)
            (folder / "tb.v").write_text(testbench)
        (folder / "program.json").write_text(json.dumps(description, indent=2) + "\n")

    write_folder_atomically(
        args.output, fill, is_earlier_output=earlier_output,
        kind="an hwloop compile output (its files, and what running tb.v makes, alone)")
    what = "program" + (", a.hex, b.hex, c.hex" if given else " only (no operands)")
    what += f", {params.name}.v and tb.v (program.json says how to run them)" \
        if testbench is not None else ""
    print(f"wrote {args.output}: {len(images.program.instructions)} instructions for "
          f"{gemm.m}x{gemm.n}x{gemm.k} on {params.name}, {what}; model: {model.cycles:,} "
          "cycles")
    return 0
