"""CLI commands of the search area: ``sweep``, ``db export``, ``report``, ``best``.

(See hwloop.cli for the registration protocol.)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from hwloop.cli import path_arg
from hwloop.errors import InputError

FIDELITIES = ("rtl", "model")  # hwloop.search.sweep.FIDELITIES (not imported: it loads numpy)


def register(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep", help="search a design space with RTL (or the model) in the loop",
        description="Search a design space: ask a method for points, evaluate them in parallel "
                    "(local workers or a Dask cluster), record every result in a SQLite DB.")
    sweep.add_argument("--space", required=True, type=path_arg, help="design space TOML file")
    sweep.add_argument("--method", default="random",
                       help="random | bo | cbo | apollo | optuna-tpe (default: random)")
    sweep.add_argument("--budget", required=True, type=int, help="number of evaluations")
    sweep.add_argument("--workers", type=int, default=None,
                       help="local worker processes (default: one per core)")
    sweep.add_argument("--scheduler", default=None, metavar="URL",
                       help="Dask scheduler address, e.g. tcp://127.0.0.1:8786")
    sweep.add_argument("--db", type=path_arg, default=Path("runs.db"), help="results DB (runs.db)")
    sweep.add_argument("--resume", action="store_true",
                       help="continue the sweep of this method/seed/fidelity in --db")
    sweep.add_argument("--warm-start", type=path_arg, default=None, metavar="OTHER_DB",
                       help="seed the method with the results in another sweep's DB")
    sweep.add_argument("--fidelity", default=None, help="rtl | model (default: the space's)")
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                       help="per-evaluation time limit; a hung one is killed and recorded")
    sweep.add_argument("--retry-failed", action="store_true",
                       help="evaluate again the proposed points whose stored row is failed or "
                            "timeout (default: reuse every stored row)")
    sweep.add_argument("--log-dir", type=path_arg, default=None,
                       help="folder for the worker processes' output (default: stderr)")
    sweep.add_argument("--quiet", action="store_true", help="no progress display")
    sweep.set_defaults(func=cmd_sweep)

    db = commands.add_parser("db", help="results DB tools")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION",
                                    parser_class=commands._parser_class)
    db_commands.required = True
    export = db_commands.add_parser("export", help="export evaluations as CSV or Parquet")
    export.add_argument("--db", type=path_arg, default=Path("runs.db"), help="results DB (runs.db)")
    export.add_argument("--format", choices=("csv", "parquet"), default=None,
                        help="default: from the output file's extension")
    export.add_argument("-o", "--output", type=path_arg, required=True, metavar="FILE",
                        help="the table to write (.csv or .parquet), or - for standard output "
                             "(csv)")
    export.set_defaults(func=cmd_db_export)

    report = commands.add_parser("report", help="plots and an HTML report of a results DB")
    report.add_argument("--db", type=path_arg, default=Path("runs.db"), help="results DB (runs.db)")
    report.add_argument("-o", "--output", type=path_arg, required=True, metavar="DIR",
                        help="folder for index.html and the plots: new, empty or an earlier "
                             "report (replaced as a whole)")
    report.set_defaults(func=cmd_report)

    best = commands.add_parser("best", help="the best feasible design in a results DB")
    best.add_argument("--db", type=path_arg, default=Path("runs.db"), help="results DB (runs.db)")
    best.add_argument("--fidelity", default=None, choices=FIDELITIES,
                      help="only rows of this fidelity")
    best.add_argument("--json", action="store_true", help="print JSON")
    best.set_defaults(func=cmd_best)


# -- sweep --------------------------------------------------------------------------------

def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from hwloop.paths import cache_dir, check_folder_path
    from hwloop.search.space import load_space
    from hwloop.search.sweep import check_options, run_sweep

    # Cheap checks first: nothing is loaded, started or written on bad input.
    check_options(budget=args.budget, workers=args.workers, timeout=args.timeout,
                  fidelity=args.fidelity, seed=args.seed, scheduler=args.scheduler,
                  log_dir=args.log_dir)
    if args.scheduler is not None and not args.scheduler.startswith(("tcp://", "tls://",
                                                                       "inproc://", "ucx://")):
        raise InputError(f"--scheduler {args.scheduler}: not a Dask address "
                         f"(like tcp://127.0.0.1:8786)")
    space = load_space(args.space)
    if args.scheduler is None:  # the local workers' cache: refused before the DB is made
        cache_dir()
    if args.log_dir is not None:
        check_folder_path(args.log_dir, name=f"--log-dir {args.log_dir}")
        try:
            args.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # no permission
            raise InputError(f"--log-dir {args.log_dir}: cannot create the folder: "
                             f"{exc.strerror or exc}") from None
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
        console=console, disable=args.quiet, transient=False)
    task = progress.add_task(f"{args.method} on {space.name}", total=args.budget,
                             status="starting")

    best_so_far: list[Any] = [None]

    def on_result(summary: Any, row: Any) -> None:
        best = best_so_far[0] = _better(best_so_far[0], row)
        best_text = f"best {best.objective:.4g}" if best is not None else "best -"
        progress.update(task, completed=summary.told, status=(
            f"feasible {summary.feasible}  infeasible {summary.infeasible}  "
            f"failed {summary.failed}  "
            f"timeout {summary.timeouts}  {best_text}"))

    def on_start(summary: Any) -> None:
        for row in summary.rows:  # a resumed sweep's rows count toward its best, as its counts
            best_so_far[0] = _better(best_so_far[0], row)
        progress.start()  # only once the engine is up and the DB accepted: errors stay 1 line
        progress.update(task, completed=summary.told, status=f"resumed {summary.resumed}"
                        if summary.resumed else "running")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # stop like Ctrl-C: workers killed, finished rows kept

    signal.signal(signal.SIGTERM, on_term)
    try:
        summary = run_sweep(
            space, method=args.method, budget=args.budget, db_path=args.db,
            workers=args.workers, scheduler=args.scheduler, resume=args.resume,
            warm_start=args.warm_start, fidelity=args.fidelity, seed=args.seed,
            timeout=args.timeout, on_result=on_result, on_start=on_start,
            log_dir=args.log_dir, retry_failed=args.retry_failed)
    finally:
        if progress.live.is_started:  # stop() of a display never started prints a blank line
            progress.stop()
    print(f"sweep {summary.sweep.method} seed {summary.sweep.seed} on {space.name} "
          f"({summary.sweep.fidelity}): {summary.told}/{args.budget} told "
          f"({summary.evaluated} evaluated, {summary.reused} reused, {summary.resumed} resumed), "
          f"{summary.feasible} feasible, {summary.infeasible} infeasible, "
          f"{summary.failed} failed, {summary.timeouts} timeout, "
          f"{summary.wall_s:.1f} s")
    if summary.exhausted:
        print(f"the method ran out of new points of {space.name} before the budget")
    if summary.best is not None:
        print(f"best {space.objective} = {summary.best.objective:.6g}: "
              f"{json.dumps(summary.best.params)}")
    else:
        print("no feasible design found")
    print(f"results in {summary.db_path}")
    return 0


def _better(best: Any, row: Any) -> Any:
    if not (row.feasible and row.status == "ok" and row.objective is not None):
        return best
    if best is None or row.objective < best.objective:
        return row
    return best


# -- db export ----------------------------------------------------------------------------

def cmd_db_export(args: argparse.Namespace) -> int:
    from hwloop.search.report import export_rows

    fmt = args.format
    if str(args.output) == "-":  # standard output, as for trace export
        if fmt == "parquet":
            raise InputError("-o -: Parquet is binary; name a .parquet file to write")
        count = export_rows(args.db, "-", fmt="csv")
        print(f"wrote {count} evaluations to standard output", file=sys.stderr)
        return 0
    if fmt is None:
        suffix = args.output.suffix.lower()
        fmt = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix)
        if fmt is None:
            raise InputError(f"-o {args.output}: cannot tell the format from the extension; "
                             f"pass --format csv|parquet")
    count = export_rows(args.db, args.output, fmt=fmt)
    print(f"wrote {count} evaluations to {args.output}")
    return 0


# -- report -------------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    from hwloop.search.report import write_report

    index = write_report(args.db, args.output)
    print(f"report: {index}")
    return 0


# -- best ---------------------------------------------------------------------------------

def cmd_best(args: argparse.Namespace) -> int:
    from hwloop.search.db import ResultsDB

    with ResultsDB.open_existing(args.db) as db:
        row = db.best(fidelity=args.fidelity)
        space_name = db.space_name
        objective_name = db.meta.get("objective", "objective")
        counts = db.feasible_counts() if row is None else {}
    if row is None:
        if args.fidelity is None:
            raise InputError(f"{args.db}: no feasible design in it")
        # the DB may well hold feasible designs at the other fidelity: say so, and how many
        rows, _ = counts.pop(args.fidelity, (0, 0))
        others = "; ".join(f"{n} feasible at {f}" for f, (_, n) in counts.items())
        what = ("no rows" if rows == 0 else f"{rows} row{'s' if rows > 1 else ''}, none feasible")
        raise InputError(f"{args.db}: no feasible design at fidelity {args.fidelity} "
                         f"({what}{'; ' + others if others else ''})")
    record = {
        "space": space_name, "params": row.params, "objective": row.objective,
        "metrics": row.metrics, "fidelity": row.fidelity, "method": row.method,
        "params_hash": row.params_hash, "id": row.id,
    }
    if args.json:
        json.dump(record, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    print(f"best feasible design in {args.db} (space {space_name}, {row.fidelity} fidelity, "
          f"found by {row.method}):")
    print(f"  {objective_name} = {_number(row.objective)}")
    for key, value in row.params.items():
        print(f"  {key:<14} {value}")
    for key, value in sorted(row.metrics.items()):
        print(f"  {key:<14} {_number(value)}")
    return 0


def _number(value: float) -> str:
    """A metric as people read it: counts (stored as floats) whole, others to 6 digits."""
    if float(value).is_integer() and abs(value) < 1e15:  # beyond, a float is not an exact count
        return f"{int(value):,}"
    return f"{value:.6g}"
