"""Reports of a results DB: Pareto fronts, convergence per method, the best designs (HTML).

Also the flat export (CSV / Parquet) behind ``hwloop db export``. Every output is written under
a temporary name first and renamed into place (a report as a whole folder), so an interrupted
report leaves no half files; no output replaces its input or a folder of the user's.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from hwloop.errors import InputError
from hwloop.manifest import same_file, write_folder_atomically
from hwloop.paths import check_folder_path, mkstemp
from hwloop.search.db import FLAT_COLUMNS, ResultsDB, Row

METHOD_COLORS = {"random": "#7f7f7f", "bo": "#1f77b4", "cbo": "#d62728", "apollo": "#2ca02c",
                 "optuna-tpe": "#9467bd"}


# -- export -------------------------------------------------------------------------------

# Parquet types of the fixed columns: the same with or without rows (a column that is None in
# every row would otherwise be of type null).
_ARROW_TYPES = {"id": "int64", "method": "string", "fidelity": "string", "status": "string",
                "feasible": "bool", "infeasible_kind": "string", "objective": "float64",
                "params_hash": "string", "seed": "int64", "wall_s": "float64",
                "finished_at": "float64", "log_path": "string", "error": "string"}


def export_rows(db_path: str | Path, output: str | Path, *, fmt: str) -> int:
    """Write every evaluation as one flat record (``param.*``, ``metric.*`` columns); ``output``
    ``-`` writes CSV to standard output.

    A DB with no evaluations gives the fixed columns and no rows (a CSV header line), so that
    a script reading the export needs no special case."""
    if fmt not in ("csv", "parquet"):
        raise InputError(f"--format must be csv or parquet, not {fmt!r}")
    if str(output) == "-" and fmt == "csv":  # standard output
        with ResultsDB.open_existing(db_path) as db:
            records = list(db.iter_flat())
        _write_csv(sys.stdout, records)
        return len(records)
    output = Path(output)
    if not output.parent.is_dir():
        raise InputError(f"-o {output}: folder {output.parent} does not exist")
    check_folder_path(output, name=f"-o {output}", parents_only=True)  # unsearchable: EACCES
    if output.is_dir():
        raise InputError(f"-o {output}: is a folder, not a file name")
    if output.exists() and not output.is_file():  # a device, a pipe: renamed over, it is gone
        raise InputError(f"-o {output}: exists and is not a regular file (the export would "
                         f"replace it); name a file")
    db_path = Path(db_path)
    # the DB and its WAL sidecars: replacing one of them loses the results
    for suffix in ("", "-wal", "-shm"):
        if same_file(output, f"{db_path}{suffix}"):  # (with_name: no name for /)
            what = "the results DB" if not suffix else f"the {suffix[1:]} file of the results DB"
            raise InputError(f"-o {output}: is {what} it reads (--db {db_path}); "
                             f"name another file")
    with ResultsDB.open_existing(db_path) as db:
        records = list(db.iter_flat())
    columns = _columns(records)
    fd, tmp_name = mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "csv":
            with open(tmp, "w", newline="") as handle:
                _write_csv(handle, records)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({c: pa.array([r.get(c) for r in records], type=_ARROW_TYPES.get(c))
                              for c in columns})
            pq.write_table(table, tmp)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(records)


def _columns(records: list[dict[str, Any]]) -> list[str]:
    columns = list(FLAT_COLUMNS)
    for record in records:
        columns += [k for k in record if k not in columns]
    return columns


def _write_csv(handle: Any, records: list[dict[str, Any]]) -> None:
    writer = csv.DictWriter(handle, fieldnames=_columns(records))
    writer.writeheader()
    writer.writerows(records)


# -- analysis -----------------------------------------------------------------------------

def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points not dominated in (x, y), both minimized, sorted by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points):
        if not front or y < front[-1][1]:
            if front and front[-1][0] == x:
                front[-1] = (x, y)
            else:
                front.append((x, y))
    return front


def best_so_far(rows: list[Row]) -> list[float]:
    """The best feasible objective after each evaluation (nan until one is feasible)."""
    curve, best = [], math.inf
    for row in rows:
        if row.feasible and row.status == "ok" and row.objective is not None:
            best = min(best, row.objective)
        curve.append(best if math.isfinite(best) else math.nan)
    return curve


# -- plots --------------------------------------------------------------------------------

def _plot_pareto(rows: list[Row], path: Path, objective: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, metric in zip(axes, ("cycles", "edp"), strict=True):
        feasible = [(r.metrics["area"], r.metrics[metric]) for r in rows
                    if r.feasible and r.status == "ok" and "area" in r.metrics
                    and metric in r.metrics]
        over = [(r.metrics["area"], r.metrics[metric]) for r in rows
                if not r.feasible and "area" in r.metrics and metric in r.metrics]
        if over:
            ax.scatter(*zip(*over, strict=True), marker="x", color="#ff7f0e", alpha=0.7,
                       label=f"over budget ({len(over)})")
        if feasible:
            ax.scatter(*zip(*feasible, strict=True), color="#1f77b4", alpha=0.6, s=22,
                       label=f"feasible ({len(feasible)})")
            front = pareto_front(feasible)
            ax.step(*zip(*front, strict=True), where="post", color="#d62728", linewidth=1.8,
                    label=f"Pareto front ({len(front)})")
            ax.scatter(*zip(*front, strict=True), color="#d62728", s=30, zorder=3)
        values = feasible + over
        if values:
            for axis, pick in (("x", 0), ("y", 1)):
                vals = [v[pick] for v in values if v[pick] > 0]
                if vals and max(vals) / min(vals) > 30:
                    getattr(ax, f"set_{axis}scale")("log")
        else:
            ax.text(0.5, 0.5, "no measured designs", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel("area proxy (lower is better)")
        ax.set_ylabel(f"{metric} (lower is better)")
        ax.set_title(f"area vs {metric}")
        ax.grid(True, alpha=0.3)
        if values:  # a legend of nothing warns
            ax.legend(fontsize=8)
    fig.suptitle(f"Designs measured (objective: {objective})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_convergence(curves: dict[str, list[list[float]]], path: Path, objective: str,
                      samples: dict[str, list[list[float]]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    positive = True
    for method, runs in sorted(curves.items()):
        color = METHOD_COLORS.get(method)
        for i, curve in enumerate(runs):
            xs = list(range(1, len(curve) + 1))
            ax.plot(xs, curve, color=color, alpha=0.9 if len(runs) == 1 else 0.6,
                    drawstyle="steps-post", label=method if i == 0 else None)
            positive &= all(v > 0 for v in curve if not math.isnan(v))
        for values in (samples or {}).get(method, []):  # every feasible evaluation, faint
            xs = [i + 1 for i, v in enumerate(values) if not math.isnan(v)]
            ys = [v for v in values if not math.isnan(v)]
            ax.scatter(xs, ys, color=color, alpha=0.25, s=14)
            positive &= all(v > 0 for v in ys)
    finite = [v for runs in curves.values() for c in runs for v in c if not math.isnan(v)]
    if finite and positive and max(finite) / min(finite) > 30:
        ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"feasible {objective} (lower is better)")
    ax.set_title("Convergence per method (line: best so far per sweep; dots: each feasible "
                 "design)", fontsize=10)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- HTML ---------------------------------------------------------------------------------

def _table(headers: list[str], body: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>"
                   for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)


def _reason(text: str | None) -> str:
    """What failed, in one line: of a traceback, the ``Type: message`` line after its last
    frame (its last line may be the tail of a multi-line message); else the first line."""
    lines = (text or "").strip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    i = frames[-1] + 1 if frames else int(bool(lines) and lines[0].startswith("Traceback"))
    while frames and i < len(lines) and lines[i].startswith("    "):  # the frame's source
        i += 1
    return lines[i] if i < len(lines) else (lines[-1] if lines else "")


_CSS = """body{font-family:sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}
th{background:#eee}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}"""


#: What a report folder holds (it is replaced as a whole by the next report).
REPORT_FILES = ("index.html", "pareto.png", "convergence.png", "best.csv")
_REPORT_TITLE = b"<title>hwloop sweep report"


def is_report(folder: Path) -> bool:
    """``folder`` is an earlier report: its files, and an index.html that write_report made."""
    names = {p.name for p in folder.iterdir()}
    if not names <= set(REPORT_FILES) or "index.html" not in names:
        return False
    with open(folder / "index.html", "rb") as handle:
        return _REPORT_TITLE in handle.read(4096)


def write_report(db_path: str | Path, out_dir: str | Path, *, top: int = 10) -> Path:
    """Write pareto.png, convergence.png, best.csv and index.html into ``out_dir``."""
    out_dir = Path(out_dir)
    with ResultsDB.open_existing(db_path) as db:
        meta = db.meta
        rows = db.rows()
        sweeps = db.sweeps()
        trials = {s.id: db.trials(s) for s in sweeps}
    if not rows:
        raise InputError(f"{db_path}: no evaluations to report")
    objective = meta.get("objective") or "objective"
    check_folder_path(out_dir, name=f"-o {out_dir}")
    # checked before the plots are made; write_folder_atomically checks again as it replaces
    try:
        empty = not out_dir.is_dir() or not any(out_dir.iterdir())
        earlier = not empty and is_report(out_dir)
    except OSError as exc:  # a folder that cannot be listed, an index.html unreadable (000)
        what = "it" if exc.filename in (None, str(out_dir)) else exc.filename
        raise InputError(f"-o {out_dir}: cannot read {what}: {exc.strerror or exc}") from None
    if not empty and not earlier:
        raise InputError(f"-o {out_dir}: exists and is not an earlier report (it would be "
                         f"replaced as a whole); name a new or empty folder")

    def fill(staging: Path) -> None:
        _plot_pareto(rows, staging / "pareto.png", objective)
        curves: dict[str, list[list[float]]] = defaultdict(list)
        samples: dict[str, list[list[float]]] = defaultdict(list)
        for sweep in sweeps:
            if trials[sweep.id]:
                curves[sweep.method].append(best_so_far(trials[sweep.id]))
                samples[sweep.method].append([
                    r.objective if r.feasible and r.status == "ok" and r.objective is not None
                    else math.nan for r in trials[sweep.id]])
        _plot_convergence(curves, staging / "convergence.png", objective, samples)

        feasible = sorted((r for r in rows if r.feasible and r.status == "ok"
                           and r.objective is not None), key=lambda r: (r.objective, r.id))
        metric_names = sorted({k for r in feasible[:top] for k in r.metrics} - {objective})
        best_rows = [[i + 1, r.objective, r.method, r.fidelity, r.params,
                      *[r.metrics.get(m) for m in metric_names]]
                     for i, r in enumerate(feasible[:top])]
        best_headers = ["rank", objective, "method", "fidelity", "parameters", *metric_names]
        with open(staging / "best.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(best_headers)
            for r in best_rows:
                writer.writerow([json.dumps(c) if isinstance(c, dict) else c for c in r])

        statuses = ("ok", "infeasible", "failed", "timeout")
        per_sweep = []
        for sweep in sweeps:
            told = trials[sweep.id]
            counts = {s: sum(1 for r in told if r.status == s) for s in statuses}
            curve = best_so_far(told)
            final = curve[-1] if curve and not math.isnan(curve[-1]) else None
            per_sweep.append([sweep.id, sweep.method, sweep.seed, sweep.fidelity,
                              f"{len(told)}/{sweep.budget}",
                              *[counts[s] for s in statuses], final])
        failures = [[r.id, r.status, r.params, _reason(r.error), r.log_path]
                    for r in rows if r.status in ("failed", "timeout")][:20]
        page = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>hwloop sweep report: {html.escape(meta.get('space_name', ''))}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>Sweep report: space <code>{html.escape(meta.get('space_name', ''))}</code></h1>",
            f"<p>Results DB <code>{html.escape(str(db_path))}</code>, space hash "
            f"<code>{html.escape(meta.get('space_hash', ''))}</code>, objective "
            f"<b>{html.escape(objective)}</b> (lower is better). {len(rows)} evaluations, "
            f"{len(feasible)} feasible.</p>",
            "<h2>Sweeps</h2>",
            _table(["sweep", "method", "seed", "fidelity", "told/budget", *statuses,
                    f"best {objective}"], per_sweep),
            "<h2>Best designs</h2>",
            _table(best_headers, best_rows) if best_rows else "<p>No feasible design.</p>",
            "<p><a href='best.csv'>best.csv</a></p>",
            "<h2>Pareto fronts</h2><img src='pareto.png' alt='area vs cycles and EDP'>",
            "<h2>Convergence</h2><img src='convergence.png' alt='best so far per method'>",
        ]
        if failures:
            page += ["<h2>Failed and timed-out evaluations</h2>",
                     _table(["id", "status", "parameters", "reason", "log"], failures)]
        page.append("</body></html>")
        (staging / "index.html").write_text("\n".join(page))

    write_folder_atomically(out_dir, fill, is_earlier_output=is_report, kind="an earlier report")
    return out_dir / "index.html"
