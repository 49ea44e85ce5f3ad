"""``hwloop generate systolic`` and ``hwloop sim systolic``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from hwloop.cli import path_arg, working
from hwloop.errors import ParameterError
from hwloop.hdl.systolic.params import DATAFLOWS, SystolicParams

# flag → SystolicParams field (integers, but dataflow and the read_ahead switch)
PARAM_FLAGS = {
    "rows": "PE rows of the array",
    "cols": "PE columns of the array",
    "dataflow": f"dataflow ({'|'.join(DATAFLOWS)})",
    "in_bits": "signed input/weight width in bits",
    "acc_bits": "accumulator width in bits (wraps)",
    "ifmap_kib": "ifmap scratchpad KiB",
    "weight_kib": "weight scratchpad KiB",
    "acc_kib": "accumulator scratchpad KiB",
    "bus_bytes": "external memory bus width, bytes per cycle",
    "mem_latency": "external memory read latency, cycles",
    "out_bits": "write C back requantized to signed N-bit integers",
    "read_ahead": "let A loads finish under the next instruction (hides memory latency)",
}


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None


def add_param_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SystolicParams()
    group = parser.add_argument_group("design parameters")
    for name, help_text in PARAM_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        if name == "dataflow":
            group.add_argument(flag, dest=name, metavar="DF", default=default,
                               help=f"{help_text} (default {default})")
        elif isinstance(default, bool):
            group.add_argument(flag, dest=name, action="store_true",
                               help=f"{help_text} (default: off)")
        elif default is None:  # optional features: off unless given
            group.add_argument(flag, dest=name, type=_int, metavar="N", default=None,
                               help=f"{help_text} (default: off, raw acc_bits sums)")
        else:
            group.add_argument(flag, dest=name, type=_int, metavar="N", default=default,
                               help=f"{help_text} (default {default})")


def params_from_args(args: argparse.Namespace) -> SystolicParams:
    return SystolicParams(**{name: getattr(args, name) for name in PARAM_FLAGS})


def register_generate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("systolic", help="a systolic-array GEMM accelerator",
                            description="Write DIR/<name>.v, DIR/manifest.json and a FuseSoC "
                                        "DIR/<name>.core. What to load into it for a GEMM: "
                                        "hwloop compile systolic.")
    add_param_arguments(parser)
    parser.add_argument("-o", "--output", required=True, type=path_arg, metavar="DIR",
                        help="output folder (replaced as a whole; never left half-written)")
    parser.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    params = params_from_args(args)  # bad parameters fail before anything is generated
    from hwloop.hdl.systolic import generate_verilog, ports
    from hwloop.manifest import write_design

    with working(f"generating {params.name}"):
        verilog = generate_verilog(params)
    data = write_design(
        args.output, generator="systolic", name=params.name, params=params.to_dict(),
        ports=list(ports(params)), verilog=verilog,
        description=f"hwloop {params.rows}x{params.cols} {params.dataflow} systolic array")
    print(f"wrote {args.output / (params.name + '.v')} ({len(verilog.splitlines())} lines), "
          f"manifest.json, {params.name}.core (content hash {data['content_hash']})")
    return 0


def register_sim(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("systolic", help="evaluate a systolic array on a workload",
                            description="Co-simulate (rtl) or model a systolic array on a "
                                        "workload; every RTL result is checked bit-exact.")
    add_param_arguments(parser)
    parser.add_argument("--workload", required=True, metavar="NAME|FILE.csv|module:attr",
                        help="built-in network, SCALE-Sim topology CSV, or torch module")
    parser.add_argument("--layer", action="append", metavar="NAME",
                        help="only this layer (repeatable)")
    parser.add_argument("--first", type=_int, metavar="N", help="only the first N layers")
    parser.add_argument("--fidelity", choices=("rtl", "model"), default="rtl",
                        help="rtl: co-simulate the generated Verilog (default); model: the "
                             "closed-form model, same cycles and actions")
    parser.add_argument("--mapping", metavar="tile_m=..,tile_n=..,tile_k=..[,order=..]",
                        help="one mapping for every layer (fit to each); default: chosen per "
                             "layer")
    parser.add_argument("--out-shift", dest="out_shift", type=_int, metavar="S",
                        help="requantization right shift of every layer (with --out-bits; "
                             "default: chosen per layer from in_bits, k and out_bits)")
    parser.add_argument("--seed", type=_int, default=0, help="random operands seed")
    parser.add_argument("--waves", action="store_true", help="write an FST waveform (rtl)")
    parser.add_argument("--json", action="store_true",
                        help="print exactly one JSON object on stdout")
    parser.add_argument("--no-reuse", dest="reuse", action="store_false",
                        help="simulate again even if this exact evaluation is cached")
    parser.add_argument("--energy-table", type=path_arg, metavar="FILE",
                        help="energy-per-action TOML (default constraints/energy.toml)")
    parser.set_defaults(func=run_sim)


def parse_mapping(text: str | None) -> Any:
    if text is None:
        return None
    from hwloop.sim.systolic.mapping import Mapping

    fields: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ParameterError(f"--mapping: expected key=value, not {item.strip()!r}")
        if key in fields:
            raise ParameterError(f"--mapping: {key} given twice")
        if key == "order":
            fields[key] = value
        else:
            try:
                fields[key] = int(value)
            except ValueError:
                raise ParameterError(f"--mapping: {key} must be an integer, not {value!r}"
                                     ) from None
    return Mapping.from_dict(fields)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything (tools' subprocesses too) written to fd 1 to stderr, for --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def evaluation_json(evaluation: Any, *, seed: int) -> dict[str, Any]:
    from hwloop.sim.systolic.bounds import limiting

    layers = []
    for layer in evaluation.layers:
        record = dataclasses.asdict(layer)
        layers.append({**{key: record[key] for key in (
            "name", "m", "n", "k", "repeat", "cycles", "macs", "utilization", "energy_pj",
            "energy_breakdown", "bit_exact", "mapping", "actions", "out_shift", "bounds")},
            "limit": limiting(layer.bounds)})
    return {
        "workload": evaluation.workload,
        "fidelity": evaluation.fidelity,
        "seed": seed,
        "params": evaluation.params,
        "layers": layers,
        "total": {
            "cycles": evaluation.cycles,
            "macs": evaluation.macs,
            "utilization": evaluation.utilization,
            "area": evaluation.area,
            "area_cells": evaluation.area_cells,
            "sram_bits": evaluation.sram_bits,
            "energy_pj": evaluation.energy_pj,
            "energy_breakdown": evaluation.energy_breakdown,
            "edp": evaluation.edp,
            "bit_exact": evaluation.bit_exact,
        },
        "wall": evaluation.wall,
        "artifacts": evaluation.artifacts,
        "tool_versions": evaluation.tool_versions,
    }


def run_sim(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    if args.waves and args.fidelity != "rtl":
        raise ParameterError("--waves needs --fidelity rtl (the model has no waveform)")
    if args.json:  # a traced module's own prints, tools' output: stderr, stdout is the JSON
        with stdout_to_stderr():
            result = _evaluate(args, params)
        print(json.dumps(evaluation_json(result, seed=args.seed)))
    else:
        result = _evaluate(args, params)
        print_table(result, seed=args.seed)
    if result.bit_exact is False:  # evaluate raises first; kept as a guard
        return 1
    return 0


def _evaluate(args: argparse.Namespace, params: SystolicParams) -> Any:
    from hwloop.sim.energy import load_energy_table
    from hwloop.sim.evaluate import check_design, evaluate
    from hwloop.workloads import load_workload

    workload = load_workload(args.workload).select(layers=args.layer, first=args.first)
    mapping = parse_mapping(args.mapping)
    # infeasible designs (and shifts they cannot apply) fail before any build
    check_design(params, workload, mapping, out_shift=args.out_shift)
    table = load_energy_table(args.energy_table)
    doing = (f"{'co-simulating' if args.fidelity == 'rtl' else 'modelling'} {params.name} on "
             f"{workload.name} (build, synthesis and results are cached)")
    with working(doing):
        return evaluate(params, workload, mapping, args.fidelity, seed=args.seed,
                        waves=args.waves, energy_table=table, reuse=args.reuse,
                        out_shift=args.out_shift)


def _rendered_width(renderable: Any) -> int:
    """Columns ``renderable`` takes when nothing limits its width."""
    import io

    from rich.console import Console

    wide = Console(width=10_000, file=io.StringIO(), color_system=None)
    with wide.capture() as capture:
        wide.print(renderable)
    return max(len(line.rstrip()) for line in capture.get().splitlines())


def _limit_cell(layer: Any) -> str:
    """The resource whose lower bound is the largest, and that bound as a share of the
    layer's cycles (100%: the layer runs at that resource's full rate)."""
    from hwloop.sim.systolic.bounds import limiting

    name = limiting(layer.bounds)
    return f"{name} {layer.bounds[name] / max(layer.cycles, 1):.1%}"


def print_table(evaluation: Any, *, seed: int) -> None:
    from rich.table import Table
    from rich.text import Text

    from hwloop.cli import stdout_console

    p = evaluation.params
    title = (f"{evaluation.workload} on {p['rows']}x{p['cols']} {p['dataflow']} "
             f"i{p['in_bits']}a{p['acc_bits']}"
             + (f"o{p['out_bits']}" if p.get("out_bits") is not None else "")
             + (" read-ahead" if p.get("read_ahead") else "")
             + f" — {evaluation.fidelity}, seed {seed}")
    shifts = p.get("out_bits") is not None  # requantized outputs: each layer's shift
    marks = {True: "[green]yes[/green]", False: "[red]NO[/red]", None: "-"}
    rows = [[layer.name, f"{layer.m}x{layer.n}x{layer.k}", str(layer.repeat),
             f"{layer.cycles:,}", f"{layer.macs:,}", f"{layer.utilization:.1%}",
             _limit_cell(layer), f"{layer.energy_pj / 1e3:,.1f}", marks[layer.bit_exact],
             *((str(layer.out_shift),) if shifts else ())] for layer in evaluation.layers]
    bound = sum(max(layer.bounds.values()) * layer.repeat for layer in evaluation.layers)
    total = ["total", "", "", f"{evaluation.cycles:,}", f"{evaluation.macs:,}",
             f"{evaluation.utilization:.1%}", f"{bound / max(evaluation.cycles, 1):.1%}",
             f"{evaluation.energy_pj / 1e3:,.1f}", marks[evaluation.bit_exact],
             *(("",) if shifts else ())]
    table = Table(title=title)
    for i, column in enumerate(("layer", "M x N x K", "x", "cycles", "MACs", "util", "limit",
                                "energy nJ", "bit-exact", *(("shift",) if shifts else ()))):
        width = max(len(column), *(Text.from_markup(row[i]).cell_len for row in (*rows, total)))
        table.add_column(column, justify="left" if column == "layer" else "right",
                         no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*row)
    table.add_section()
    table.add_row(*total)
    # no cell is ever cut: a terminal narrower than the table wraps its lines instead
    console = stdout_console()
    console.width = max(console.width, _rendered_width(table))
    console.print(table)
    wall = evaluation.wall
    parts = ", ".join(f"{k}: {v / 1e3:,.1f} nJ" for k, v in evaluation.energy_breakdown.items()
                      if v)
    console.print(
        f"area {evaluation.area / 1e6:.3f} mm² proxy ({evaluation.area_cells:,} cells, "
        f"{evaluation.sram_bits:,} SRAM bits) · EDP {evaluation.edp:.3e} pJ·cycles\n"
        f"energy: {parts}\n"
        f"wall: build {wall.get('build_s', 0):.1f} s, simulate {wall.get('simulate_s', 0):.1f} s, "
        f"synthesize {wall.get('synthesize_s', 0):.1f} s, total {wall.get('total_s', 0):.1f} s")
    if evaluation.artifacts.get("reused"):
        console.print("results reused from an identical earlier evaluation "
                      f"({evaluation.artifacts['reused']}); --no-reuse simulates again")
    if evaluation.artifacts.get("waves"):
        console.print(f"waves: {evaluation.artifacts['waves']}")
