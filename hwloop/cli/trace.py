"""``hwloop trace capture|import|export|info|recipes``: memory traces of real programs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hwloop.cli import path_text
from hwloop.errors import InputError, ParameterError
from hwloop.manifest import same_file
from hwloop.paths import check_folder_path
from hwloop.traces import (
    L1Filter,
    TraceWriter,
    iter_csv,
    iter_lackey,
    iter_trace_chunks,
    output_directory,
    trace_info,
    write_csv,
    write_csv_to,
)


def register(commands: argparse._SubParsersAction) -> None:
    trace = commands.add_parser("trace", help="capture, convert and inspect memory traces")
    sub = trace.add_subparsers(dest="trace_command", metavar="ACTION",
                               parser_class=type(trace))
    sub.required = True

    cap = sub.add_parser(
        "capture", help="trace a program's data accesses with valgrind lackey",
        description="Run PROGRAM under valgrind lackey and write its data accesses "
                    "(PC, address, read/write) to a .trace file.",
        epilog="example: hwloop trace capture -o gzip.trace --l1 32K:8:64 --max 500000 "
               "-- gzip -c -9 /usr/share/dict/words")
    cap.add_argument("-o", "--output", required=True, type=path_text,
                     help="the .trace file to write")
    cap.add_argument("--skip", default="auto",
                     help="start-up to drop: auto (main if the program has the symbol, else "
                          "its ELF entry), main, entry, a count N of accesses, main+N, entry+N "
                          "(default: auto)")
    cap.add_argument("--max", type=int, default=None, metavar="N",
                     help="stop the program once N accesses are written (after --l1)")
    _add_l1(cap)
    cap.add_argument("--show-output", action="store_true",
                     help="let the program's stdout/stderr through (default: discarded); "
                          "with --json both go to stderr")
    cap.add_argument("--json", action="store_true", help="print the capture statistics as JSON")
    # optional for argparse (ARGS, a REMAINDER, would be named required with it), checked below
    cap.add_argument("program", metavar="PROGRAM", nargs="?", help="program to run (after --)")
    cap.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                     help="its arguments")
    cap.set_defaults(func=run_capture)

    imp = sub.add_parser("import", help="convert a lackey log or Parrot csv to a .trace file",
                         epilog="example: hwloop trace import gcc.csv --format csv -o gcc.trace")
    imp.add_argument("input", metavar="FILE", type=path_text)
    imp.add_argument("--format", required=True, choices=("lackey", "csv"))
    imp.add_argument("-o", "--output", required=True, type=path_text,
                     help="the .trace file to write")
    imp.add_argument("--max", type=int, default=None, metavar="N",
                     help="keep only the first N accesses (after --l1)")
    _add_l1(imp)
    imp.set_defaults(func=run_import)

    exp = sub.add_parser("export", help="write a .trace file as Parrot csv (pc,address)",
                         epilog="example: hwloop trace export traces/sort.trace --format csv "
                                "-o sort.csv")
    exp.add_argument("input", metavar="TRACE", type=path_text)
    exp.add_argument("--format", required=True, choices=("csv",))
    exp.add_argument("-o", "--output", required=True, type=path_text,
                     help="the csv file to write, or - for standard output")
    exp.add_argument("--with-kind", action="store_true",
                     help="add a third column r/w (Parrot's csv has no read/write column)")
    exp.set_defaults(func=run_export)

    info = sub.add_parser("info", help="accesses, unique lines and PCs, reads/writes",
                          epilog="example: hwloop trace info traces/compress.trace --json")
    info.add_argument("input", metavar="TRACE", type=path_text)
    info.add_argument("--line-bytes", type=int, default=64,
                      help="line size for counting unique lines (default 64)")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=run_info)

    rec = sub.add_parser("recipes", help="build and capture the bundled workload recipes",
                         epilog="example: hwloop trace recipes --all -o traces")
    rec.add_argument("names", nargs="*", metavar="NAME", help="recipes to capture")
    rec.add_argument("--all", action="store_true", help="capture every recipe")
    rec.add_argument("--list", action="store_true", help="list the recipes and exit")
    rec.add_argument("-o", "--output", default="traces", type=path_text,
                     help="directory (default traces)")
    rec.add_argument("--l1", default="32K:8:64", metavar="SIZE:WAYS:LINE",
                     help="L1 filter (default 32K:8:64; 'none' for unfiltered traces)")
    rec.add_argument("--max", type=int, default=None, metavar="N",
                     help="cap each trace at N accesses (default: the recipe's cap, 1M)")
    rec.set_defaults(func=run_recipes)


def _add_l1(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--l1", default=None, metavar="SIZE:WAYS:LINE",
                        help="keep only the accesses that miss in an LRU L1 cache of this "
                             "geometry, e.g. 32K:8:64 (an L2-like stream)")


def _l1_filter(spec: str | None) -> L1Filter | None:
    if spec is None or spec.lower() == "none":
        return None
    return L1Filter.from_spec(spec)


def _check_max(value: int | None) -> None:
    if value is not None and value <= 0:
        raise ParameterError(f"--max must be a positive number of accesses, not {value}")


def run_capture(args: argparse.Namespace) -> int:
    from hwloop.capture import capture

    if args.program is None:
        raise ParameterError("name the program to trace: hwloop trace capture -o FILE -- "
                             "PROGRAM [ARGS ...]")
    _check_max(args.max)
    program_args = list(args.args)
    if program_args[:1] == ["--"]:
        program_args = program_args[1:]
    stats = capture(args.program, program_args, args.output, skip=args.skip,
                    max_accesses=args.max, l1=_l1_filter(args.l1),
                    show_output=args.show_output, output_to_stderr=args.json)
    if args.json:
        print(json.dumps(stats.as_dict(), indent=2))
    else:
        how = " (stopped at --max)" if stats.stopped_early else ""
        l1 = (f", L1 {args.l1} miss rate {stats.l1_misses / stats.l1_accesses:.3f}"
              if stats.l1 and stats.l1_accesses else "")
        print(f"wrote {stats.output}: {_accesses(stats.records)}{how} from "
              f"{stats.data_accesses} traced ({stats.before_start} before start, "
              f"{stats.skipped} skipped){l1}, {stats.seconds:.1f} s")
    if stats.exit_status not in (0, None):
        print(f"hwloop: warning: {args.program} exited with status {stats.exit_status}",
              file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    _check_max(args.max)
    l1 = _l1_filter(args.l1)
    source: Iterator[np.ndarray] = (iter_lackey(args.input) if args.format == "lackey"
                                    else iter_csv(args.input))
    _check_input_file(args.input, "a file to import")
    if same_file(args.output, args.input):  # the output is renamed onto it: the input is lost
        raise InputError(f"{args.output}: is the file being imported; name another trace file "
                         f"to write")
    with TraceWriter(args.output) as writer:
        for records in source:
            if l1 is not None:
                records = l1(records)
            if args.max is not None:
                records = records[: args.max - writer.records]
            writer.append(records)
            if args.max is not None and writer.records >= args.max:
                break
    print(f"wrote {args.output}: {_accesses(writer.count)}")
    return 0


def _check_input_file(path: str, what: str) -> None:
    if Path(path).is_dir():
        raise InputError(f"{path}: is a directory, not {what}")
    if not Path(path).exists():
        raise InputError(f"{path}: no such file")
    if not Path(path).is_file():
        raise InputError(f"{path}: is not a regular file; name {what}")


def _accesses(count: int) -> str:
    return f"{count} access{'' if count == 1 else 'es'}"


def run_export(args: argparse.Namespace) -> int:
    if args.output == "-":  # a pipe: the csv alone on stdout, the count on stderr
        # (a reader that stops early, | head, ends it quietly: hwloop.cli.main)
        count = write_csv_to(sys.stdout, iter_trace_chunks(args.input),
                             with_kind=args.with_kind)
        sys.stdout.flush()
        print(f"wrote {_accesses(count)} to standard output", file=sys.stderr)
        return 0
    if same_file(args.output, args.input):  # the output is renamed onto it: the input is lost
        raise InputError(f"{args.output}: is the trace being exported; name another csv file "
                         f"to write")
    count = write_csv(args.output, iter_trace_chunks(args.input), with_kind=args.with_kind)
    print(f"wrote {args.output}: {_accesses(count)}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    line_bytes = args.line_bytes
    if line_bytes <= 0 or line_bytes & (line_bytes - 1):
        raise ParameterError(f"--line-bytes must be a power of two, not {line_bytes}")
    info = trace_info(args.input, line_bytes=line_bytes)
    if args.json:
        print(json.dumps({"path": args.input, **info}, indent=2))
        return 0
    accesses = info["accesses"]
    print(f"{args.input}")
    print(f"  accesses       {accesses}")
    print(f"  reads          {info['reads']}")
    print(f"  writes         {info['writes']}")
    print(f"  unique lines   {info['unique_lines']} ({line_bytes}-byte lines, "
          f"{info['unique_lines'] * line_bytes / 1024:.0f} KiB footprint)")
    print(f"  unique PCs     {info['unique_pcs']}")
    if info["file_bytes"] is None:
        print("  file           not a regular file (no size)")
    else:
        per = info["file_bytes"] / accesses if accesses else 0.0
        print(f"  file           {info['file_bytes']} bytes ({per:.2f} bytes/access)")
    return 0


def run_recipes(args: argparse.Namespace) -> int:
    from hwloop.recipes import RECIPES, get_recipe, run_recipe

    if args.list:  # the named recipes (checked), else all
        for recipe in [get_recipe(n) for n in args.names] or RECIPES.values():
            print(f"{recipe.name:10s} {recipe.description}")
        return 0
    if args.all and args.names:
        raise ParameterError("give recipe names or --all, not both")
    if not args.all and not args.names:
        raise ParameterError(f"name a recipe or give --all (have {', '.join(RECIPES)})")
    _check_max(args.max)
    recipes = list(RECIPES.values()) if args.all else [get_recipe(n) for n in args.names]
    l1 = None if args.l1.lower() == "none" else args.l1
    if l1 is not None:
        L1Filter.from_spec(l1)  # validate before building anything
    out_dir = Path(args.output)
    check_folder_path(out_dir, name=str(out_dir))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # no permission
        raise InputError(f"{out_dir}: cannot make the directory: {exc.strerror}") from None
    for recipe in recipes:  # before any capture, so that no run stops half-way
        output_directory(out_dir / f"{recipe.name}.trace", "a trace file")
    for recipe in recipes:
        stats = run_recipe(recipe, out_dir, l1=l1, max_accesses=args.max)
        rate = (f", L1 miss rate {stats.l1_misses / stats.l1_accesses:.3f}"
                if stats.l1_accesses else "")
        print(f"{recipe.name:10s} {stats.records:>8d} accesses -> {stats.output} "
              f"({stats.data_accesses} traced{rate}, {stats.seconds:.1f} s)", flush=True)
    return 0
