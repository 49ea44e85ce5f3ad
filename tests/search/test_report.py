import csv
import os
import subprocess
import sys
import warnings

import pyarrow.parquet as pq

from hwloop.search.db import ResultsDB
from hwloop.search.report import best_so_far, pareto_front, write_report
from tests.search.sweep_fakes import result_for


def _db(path):
    with ResultsDB.open(path, space_name="tiny", space_hash="h", objective="edp") as db:
        for method in ("random", "bo"):
            sweep = db.new_sweep(method=method, seed=0, fidelity="model", budget=6)
            for x in range(6):
                point = {"rows": 2 + x % 3, "cols": x + (method == "bo") * 6}
                result = result_for(point, fidelity="model", seed=0)
                if x == 4:
                    result.update(status="infeasible", feasible=False, infeasible_kind="measured")
                if x == 5:
                    result = {"status": "failed", "error": "Traceback\nBuildError: boom",
                              "point": point}
                db.record(sweep, point=point, result=result, method=method, seed=0)
    return path


def test_pareto_front_and_best_so_far():
    front = pareto_front([(1, 9), (2, 5), (2, 4), (3, 6), (4, 1), (5, 1)])
    assert front == [(1, 9), (2, 4), (4, 1)]

    class R:
        def __init__(self, objective, feasible=True):
            self.objective, self.feasible, self.status = objective, feasible, "ok"

    curve = best_so_far([R(5, False), R(7), R(3), R(4), R(1, False)])
    assert curve[0] != curve[0]  # nan before the first feasible one
    assert curve[1:] == [7, 3, 3, 3]


def test_report_writes_plots_and_an_index(tmp_path):
    db_path = _db(tmp_path / "runs.db")
    index = write_report(db_path, tmp_path / "report")
    assert index == tmp_path / "report" / "index.html"
    text = index.read_text()
    for needle in ("pareto.png", "convergence.png", "Best designs", "BuildError: boom",
                   "<td>random</td>", "<td>bo</td>"):
        assert needle in text
    for name in ("pareto.png", "convergence.png"):
        data = (tmp_path / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with open(tmp_path / "report" / "best.csv") as handle:
        best = list(csv.DictReader(handle))
    assert best[0]["rank"] == "1" and float(best[0]["edp"]) > 0
    objectives = [float(r["edp"]) for r in best]
    assert len(best) == 8 and objectives == sorted(objectives)  # 2 x 4 feasible rows
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "report").stat().st_mode & 0o777 == 0o777 & ~mask  # not 0o700


def test_export_csv_and_parquet(tmp_path):
    db_path = _db(tmp_path / "runs.db")
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"runs.{fmt}"
        proc = subprocess.run([sys.executable, "-m", "hwloop", "db", "export", "--db",
                               str(db_path), "-o", str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"wrote 12 evaluations to {out}"
    with open(tmp_path / "runs.csv") as handle:
        rows = list(csv.DictReader(handle))
    table = pq.read_table(tmp_path / "runs.parquet").to_pylist()
    assert len(rows) == len(table) == 12
    assert [r["param.cols"] for r in rows] == [str(t["param.cols"]) for t in table]
    assert {r["status"] for r in rows} == {"ok", "infeasible", "failed"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv", "runs.db", "runs.parquet"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "runs.csv").stat().st_mode & 0o777 == 0o666 & ~mask  # not 0o600


def test_export_and_report_bad_input(tmp_path):
    db_path = _db(tmp_path / "runs.db")
    proc = subprocess.run([sys.executable, "-m", "hwloop", "db", "export", "--db", str(db_path),
                           "-o", str(tmp_path / "runs.xlsx")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"hwloop: error: -o {tmp_path / 'runs.xlsx'}: cannot tell the format from the "
        "extension; pass --format csv|parquet")
    missing = tmp_path / "nope.db"
    proc = subprocess.run([sys.executable, "-m", "hwloop", "report", "--db", str(missing),
                           "-o", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"hwloop: error: {missing}: no such results database")
    assert not (tmp_path / "r").exists()


def test_a_report_without_feasible_designs_warns_about_nothing(tmp_path):
    db_path = tmp_path / "runs.db"
    with ResultsDB.open(db_path, space_name="tiny", space_hash="h", objective="edp") as db:
        sweep = db.new_sweep(method="random", seed=0, fidelity="model", budget=1)
        db.record(sweep, point={"rows": 2}, method="random", seed=0,
                  result={"status": "failed", "error": "boom", "point": {"rows": 2}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels found" among them
        write_report(db_path, tmp_path / "report")
    assert (tmp_path / "report" / "pareto.png").exists()


def test_output_paths_of_the_wrong_kind_are_one_line_errors(tmp_path):
    db_path = _db(tmp_path / "runs.db")
    folder = tmp_path / "folder"
    folder.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("")
    for args, message in (
            (["db", "export", "--format", "csv", "-o", str(folder)],
             f"-o {folder}: is a folder, not a file name"),
            (["db", "export", "-o", str(afile / "runs.csv")],
             f"-o {afile / 'runs.csv'}: folder {afile} does not exist"),
            (["report", "-o", str(afile / "sub")],
             f"-o {afile / 'sub'}: {afile} exists and is not a folder"),
            (["report", "-o", str(afile / "sub" / "deeper")],
             f"-o {afile / 'sub' / 'deeper'}: {afile} exists and is not a folder")):
        proc = subprocess.run([sys.executable, "-m", "hwloop", *args, "--db", str(db_path)],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr == f"hwloop: error: {message}\n", args
    assert list(folder.iterdir()) == [] and afile.read_text() == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder", "runs.db"]
