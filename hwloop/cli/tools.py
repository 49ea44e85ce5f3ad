"""``hwloop doctor`` and ``hwloop regress``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from rich.console import Console
from rich.table import Table

from hwloop import toolchain
from hwloop.cli import path_arg, stdout_console


def register(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser("doctor", help="check every tool hwloop uses")
    doctor.set_defaults(func=run_doctor)
    from hwloop.regress import REGISTRY

    regress = commands.add_parser(
        "regress", help="randomized regression of the generators against their golden models",
        description="Draw each generator's randomized configuration matrix and run it in "
                    "parallel; exit 1 if any configuration fails.")
    level = regress.add_mutually_exclusive_group()
    level.add_argument("--quick", dest="level", action="store_const", const="quick",
                       help="the quick matrix (default)")
    level.add_argument("--full", dest="level", action="store_const", const="full",
                       help="the full matrix")
    regress.set_defaults(level="quick")
    regress.add_argument("--generator", action="append", choices=sorted(REGISTRY),
                         help="only this generator (repeatable; default: all)")
    regress.add_argument("--seed", type=int, default=0, help="matrix seed (default 0)")
    regress.add_argument("--waves", action="store_true",
                         help="write FST waveforms (dump.fst) in each configuration's work "
                              "folder, which is kept; every run prints their path")
    regress.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                         help="parallel worker processes (default 2)")
    regress.add_argument("--max-configs", type=int, metavar="N",
                         help="run only the first N configurations of each matrix")
    regress.add_argument("--timeout", type=float, metavar="SECONDS",
                         help="fail a configuration that takes longer (its build included; "
                              "default: no limit)")
    regress.add_argument("--config", metavar="JSON",
                         help="run just this configuration (as printed by a failure) with "
                              "--seed")
    regress.add_argument("--workdir", type=path_arg,
                         help="where runs write, one folder per configuration, all kept "
                              "(default: a temporary folder per configuration, removed when it "
                              "passes, kept for a failure or with --waves)")
    regress.set_defaults(func=run_regress)


def run_doctor(args: argparse.Namespace) -> int:
    table = Table(title="hwloop doctor")
    table.add_column("tool")
    table.add_column("version / path")
    table.add_column("status")
    table.add_column("fix")
    statuses = toolchain.doctor()
    for status in statuses:
        table.add_row(status.name, status.version or "-",
                      "[green]ok[/green]" if status.ok
                      else "[yellow]optional[/yellow]" if status.optional else "[red]missing[/red]",
                      status.fix)
    stdout_console().print(table)
    return 0 if all(s.ok or s.optional for s in statuses) else 1


def run_regress(args: argparse.Namespace) -> int:
    from hwloop.errors import ParameterError
    from hwloop.regress import REGISTRY, describe, run_regress

    config = None
    if args.config is not None:
        try:
            config = json.loads(args.config)
        except json.JSONDecodeError as exc:
            raise ParameterError(f"--config is not valid JSON: {exc}") from None
        except RecursionError:
            raise ParameterError("--config is not valid JSON: nested too deeply") from None
        if not isinstance(config, dict):
            raise ParameterError("--config must be a JSON object")
    console = stdout_console()
    err = Console(stderr=True)

    def progress(result) -> None:  # type: ignore[no-untyped-def]
        mark = "[green]pass[/green]" if result.passed else "[red]FAIL[/red]"
        err.print(f"{result.generator} #{result.index}: {mark} ({result.wall_s:.1f} s)")

    report = run_regress(level=args.level, generators=args.generator, seed=args.seed,
                         waves=args.waves, jobs=args.jobs, max_configs=args.max_configs,
                         config=config, workdir=args.workdir, timeout=args.timeout,
                         progress=progress)
    for name, why in report.skipped.items():
        print(f"skipped {name}: {why}")
    table = Table(title=f"hwloop regress --{args.level} (seed {args.seed})")
    for column in ("generator", "#", "seed", "result", "cycles", "model", "time s"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=80)
    for r in report.results:
        table.add_row(r.generator, str(r.index), str(r.seed),
                      "[green]pass[/green]" if r.passed else "[red]FAIL[/red]",
                      "-" if r.cycles is None else str(r.cycles),
                      "-" if r.model_cycles is None else str(r.model_cycles),
                      f"{r.wall_s:.1f}", r.detail or describe(r.config))
    console.print(table)
    failed = report.failed
    if args.waves:  # a passing run's folder is kept for its waves: say where they are
        for r in report.results:
            if r.passed and (r.waves or r.workdir):
                print(f"{r.generator} #{r.index} passed; "
                      + (f"waves: {r.waves}" if r.waves else f"no waves in {r.workdir}"))
    for r in failed:
        print(f"FAILED {r.generator} #{r.index} seed {r.seed}: {r.detail}")
        print(f"  config: {json.dumps(r.config, sort_keys=True)}")
        print(f"  reproduce: hwloop regress --generator {r.generator} --seed {r.seed} "
              f"--config '{json.dumps(r.config, sort_keys=True)}'")
        if r.waves:
            print(f"  waves: {r.waves}")
        if r.workdir:
            print(f"  work folder: {r.workdir}")
    passed = len(report.results) - len(failed)
    print(f"{passed} passed, {len(failed)} failed, {len(report.skipped)} generators skipped")
    if set(args.generator or REGISTRY) <= set(report.skipped):  # nothing ran: no pass
        print("hwloop: error: no requested generator could run", file=sys.stderr)
        return 1
    return 1 if failed else 0
