import csv
import os
import sqlite3
import stat
import subprocess
import sys
import traceback
import warnings

import pyarrow.parquet as pq

from hwloop.search.db import FLAT_COLUMNS, ResultsDB
from hwloop.search.report import _reason, best_so_far, export_rows, pareto_front, write_report
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
             f"-o {afile / 'sub'}: {afile} is a file, not a folder"),
            (["report", "-o", str(afile / "sub" / "deeper")],
             f"-o {afile / 'sub' / 'deeper'}: {afile} is a file, not a folder")):
        proc = subprocess.run([sys.executable, "-m", "hwloop", *args, "--db", str(db_path)],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr == f"hwloop: error: {message}\n", args
    assert list(folder.iterdir()) == [] and afile.read_text() == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder", "runs.db"]


def _hwloop(*args):
    return subprocess.run([sys.executable, "-m", "hwloop", *map(str, args)],
                          capture_output=True, text=True)


def test_no_output_replaces_its_input_or_a_folder_of_the_users(tmp_path):
    db_path = _db(tmp_path / "runs.db")
    before = db_path.read_bytes()
    for output, what in ((db_path, "the results DB"),
                         (tmp_path / "." / "runs.db", "the results DB"),
                         (tmp_path / "runs.db-wal", "the wal file of the results DB")):
        proc = _hwloop("db", "export", "--db", db_path, "--format", "csv", "-o", output)
        assert proc.returncode == 2 and proc.stderr == (
            f"hwloop: error: -o {output}: is {what} it reads (--db {db_path}); "
            f"name another file\n")
    os.link(db_path, tmp_path / "hard.db")
    proc = _hwloop("db", "export", "--db", db_path, "--format", "csv", "-o", tmp_path / "hard.db")
    assert proc.returncode == 2 and "is the results DB it reads" in proc.stderr
    assert db_path.read_bytes() == before
    (tmp_path / "hard.db").unlink()

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>my site</h1>")
    proc = _hwloop("report", "--db", db_path, "-o", site)
    assert proc.returncode == 2 and proc.stderr == (
        f"hwloop: error: -o {site}: exists and is not an earlier report (it would be replaced "
        f"as a whole); name a new or empty folder\n")
    assert [p.name for p in site.iterdir()] == ["index.html"]
    assert (site / "index.html").read_text() == "<h1>my site</h1>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db", "site"]  # no staging left

    # an earlier report (or an empty folder) is replaced as a whole: nothing stale stays
    report = tmp_path / "report"
    report.mkdir()
    write_report(db_path, report)
    (report / "best.csv").unlink()
    write_report(db_path, report)
    assert sorted(p.name for p in report.iterdir()) == [
        "best.csv", "convergence.png", "index.html", "pareto.png"]
    (report / "notes.txt").write_text("mine")
    proc = _hwloop("report", "--db", db_path, "-o", report)
    assert proc.returncode == 2 and "exists and is not an earlier report" in proc.stderr
    assert (report / "notes.txt").read_text() == "mine"


def test_a_damaged_row_is_one_line_for_report_export_and_best(tmp_path):
    db_path = _db(tmp_path / "runs.db")
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE evaluations SET metrics = '{bad' WHERE id = 2")
        best_id = raw.execute("SELECT id FROM evaluations WHERE status = 'ok' "
                              "ORDER BY objective, id LIMIT 1").fetchone()[0]
    raw.close()
    message = f"hwloop: error: {db_path}: evaluation 2: metrics is not JSON\n"
    for args in (["report", "-o", tmp_path / "r"], ["db", "export", "-o", tmp_path / "x.csv"]):
        proc = _hwloop(*args, "--db", db_path)
        assert proc.returncode == 2 and proc.stderr == message, args
    assert best_id != 2 and _hwloop("best", "--db", db_path).returncode == 0  # row 2 unread
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE evaluations SET params = '[1]' WHERE id = ?", (best_id,))
    raw.close()
    proc = _hwloop("best", "--db", db_path)
    assert proc.returncode == 2 and proc.stderr == (
        f"hwloop: error: {db_path}: evaluation {best_id}: params is not a JSON object: '[1]'\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


def test_best_at_a_fidelity_the_db_lacks_says_so(tmp_path):
    db_path = _db(tmp_path / "runs.db")  # model rows: 8 feasible
    proc = _hwloop("best", "--db", db_path, "--fidelity", "rtl")
    assert proc.returncode == 2 and proc.stderr == (
        f"hwloop: error: {db_path}: no feasible design at fidelity rtl "
        f"(no rows; 8 feasible at model)\n")
    with ResultsDB.open(db_path, space_name="tiny", space_hash="h") as db:
        sweep = db.new_sweep(method="random", seed=0, fidelity="rtl", budget=1)
        db.record(sweep, point={"rows": 2}, method="random", seed=0,
                  result={"status": "failed", "error": "boom", "point": {"rows": 2}})
    proc = _hwloop("best", "--db", db_path, "--fidelity", "rtl")
    assert proc.returncode == 2 and proc.stderr == (
        f"hwloop: error: {db_path}: no feasible design at fidelity rtl "
        f"(1 row, none feasible; 8 feasible at model)\n")
    assert _hwloop("best", "--db", db_path, "--fidelity", "model").returncode == 0


def test_export_of_a_db_without_evaluations_has_the_columns_and_no_rows(tmp_path):
    db_path = tmp_path / "runs.db"
    ResultsDB.open(db_path, space_name="tiny", space_hash="h").close()
    for fmt in ("csv", "parquet"):
        proc = _hwloop("db", "export", "--db", db_path, "-o", tmp_path / f"runs.{fmt}")
        assert proc.returncode == 0 and proc.stdout == (
            f"wrote 0 evaluations to {tmp_path / f'runs.{fmt}'}\n")
    header = (tmp_path / "runs.csv").read_text()
    assert header == ",".join(FLAT_COLUMNS) + "\n"
    table = pq.read_table(tmp_path / "runs.parquet")
    assert table.num_rows == 0 and table.column_names == list(FLAT_COLUMNS)
    assert str(table.schema.field("objective").type) == "double"
    # the same columns (and types) lead an export with rows
    full = _db(tmp_path / "full.db")
    export_rows(full, tmp_path / "full.parquet", fmt="parquet")
    schema = pq.read_table(tmp_path / "full.parquet").schema
    assert schema.names[:len(FLAT_COLUMNS)] == list(FLAT_COLUMNS)
    assert all(schema.field(c).type == table.schema.field(c).type for c in FLAT_COLUMNS)


def test_the_failure_reason_is_the_exception_not_the_last_line_of_its_message():
    def fail():
        raise RuntimeError("boom: injected failure\nsecond line")

    try:
        try:
            fail()
        except RuntimeError as exc:
            raise ValueError("outer") from exc
    except ValueError as exc:
        text = "".join(traceback.format_exception(exc)).strip()
    assert _reason(text) == "ValueError: outer"
    try:
        fail()
    except RuntimeError as exc:
        text = "".join(traceback.format_exception(exc)).strip()
    assert text.splitlines()[-1] == "second line"
    assert _reason(text) == "RuntimeError: boom: injected failure"
    assert _reason("Traceback\nBuildError: boom") == "BuildError: boom"
    assert _reason("no result after 2 s: worker killed") == "no result after 2 s: worker killed"
    assert _reason("RuntimeError: a\nb") == "RuntimeError: a"  # a Dask task's reason
    assert _reason(None) == _reason("") == ""


def test_export_does_not_replace_a_device_or_a_pipe(tmp_path):
    # the export is written beside its output and renamed over it: over a FIFO (or, run as
    # root, over /dev/full or /dev/stdout's link) it replaced the special file by a CSV
    db_path = _db(tmp_path / "runs.db")
    fifo = tmp_path / "export.csv"
    os.mkfifo(fifo)
    proc = _hwloop("db", "export", "--db", db_path, "-o", fifo)
    assert proc.returncode == 2
    assert proc.stderr == (f"hwloop: error: -o {fifo}: exists and is not a regular file (the "
                           f"export would replace it); name a file\n")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv", "runs.db"]


def test_export_to_standard_output(tmp_path):
    """-o - wrote a file named '-' (trace export's -o - is standard output)."""
    db_path = _db(tmp_path / "runs.db")
    proc = subprocess.run([sys.executable, "-m", "hwloop", "db", "export", "--db", str(db_path),
                           "-o", "-"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(proc.stdout.splitlines()))
    assert len(rows) == 12 and rows[0]["id"] == "1"
    assert proc.stderr == "wrote 12 evaluations to standard output\n"
    proc = subprocess.run([sys.executable, "-m", "hwloop", "db", "export", "--db", str(db_path),
                           "-o", "-", "--format", "parquet"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2, "", "hwloop: error: -o -: Parquet is binary; name a .parquet file to write\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


def test_an_earlier_report_whose_index_cannot_be_read_is_named(tmp_path, monkeypatch, capsys):
    """-o naming an earlier report whose index.html the user may not read (chmod 000): a
    PermissionError traceback from the check that it is a report."""
    from tests.core.cli_helpers import run_main
    from tests.unreadable import refuse_opening

    db_path = _db(tmp_path / "runs.db")
    report = tmp_path / "report"
    write_report(db_path, report)
    index = report / "index.html"
    refuse_opening(monkeypatch, index)  # as chmod 000 does, even for root
    before = sorted(p.name for p in report.iterdir())
    code, _, err = run_main(capsys, ["report", "--db", str(db_path), "-o", str(report)])
    assert (code, err) == (2, f"hwloop: error: -o {report}: cannot read {index}: "
                              f"Permission denied\n")
    assert sorted(p.name for p in report.iterdir()) == before


def test_export_of_the_root_folder_is_a_one_line_error(tmp_path, capsys):
    """--db / died with 'ValueError: PosixPath('/') has an empty name' (the check that -o is
    not the DB's -wal file built its name with with_name)."""
    from tests.core.cli_helpers import run_main

    code, _, err = run_main(capsys, ["db", "export", "--db", "/", "-o", str(tmp_path / "e.csv")])
    assert (code, err) == (2, "hwloop: error: /: is a folder, not a results database\n")
    assert list(tmp_path.iterdir()) == []
