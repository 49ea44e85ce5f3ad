import json
import sqlite3
from pathlib import Path

import pytest

from hwloop.errors import InputError
from hwloop.search.db import ResultsDB, params_hash
from tests.search.sweep_fakes import result_for


def _open(path, space_hash="h1"):
    return ResultsDB.open(path, space_name="tiny", space_hash=space_hash)


def test_schema_wal_and_one_row_per_evaluation(tmp_path):
    path = tmp_path / "runs.db"
    with _open(path) as db:
        sweep = db.new_sweep(method="random", seed=1, fidelity="model", budget=3)
        point = {"rows": 4, "cols": 4, "dataflow": "ws"}
        row = db.record(sweep, point=point, result=result_for(point, fidelity="model", seed=1),
                        method="random", seed=1, wall_s=0.5, tool_versions={"verilator": "5.048"})
        assert row.params == point and row.status == "ok" and row.feasible
        assert row.params_hash == params_hash({"dataflow": "ws", "cols": 4, "rows": 4})
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = {r[1] for r in raw.execute("PRAGMA table_info(evaluations)")}
    for name in ("space_name", "space_hash", "method", "params", "params_hash", "fidelity",
                 "metrics", "objective", "feasible", "infeasible_kind", "status", "log_path",
                 "wall_s", "tool_versions", "hwloop_version", "finished_at", "seed"):
        assert name in columns
    stored = raw.execute("SELECT params, tool_versions FROM evaluations").fetchone()
    assert json.loads(stored[0]) == point and json.loads(stored[1]) == {"verilator": "5.048"}


def test_same_configuration_and_fidelity_reuses_the_row(tmp_path):
    with _open(tmp_path / "runs.db") as db:
        a = db.new_sweep(method="random", seed=1, fidelity="model", budget=2)
        b = db.new_sweep(method="bo", seed=1, fidelity="model", budget=2)
        point = {"rows": 4}
        first = db.record(a, point=point, result=result_for(point, fidelity="model", seed=1),
                          method="random", seed=1)
        assert db.lookup(params_hash(point), "model") == first
        assert db.lookup(params_hash(point), "rtl") is None
        db.reuse(b, first)
        again = db.record(b, point=point, result={"status": "failed", "error": "x"},
                          method="bo", seed=1)
        assert again.id == first.id and again.status == "ok"  # the stored row is kept
        assert len(db.rows()) == 1
        assert [r.id for r in db.trials(b)] == [first.id, first.id]
        assert [r.id for r in db.trials(a)] == [first.id]


def test_a_failed_or_timed_out_row_is_replaced_in_place_by_a_new_result(tmp_path):
    with _open(tmp_path / "runs.db") as db:
        a = db.new_sweep(method="random", seed=1, fidelity="model", budget=2)
        b = db.new_sweep(method="bo", seed=1, fidelity="model", budget=2)
        for rows, status in ((4, "failed"), (8, "timeout")):
            point = {"rows": rows}
            first = db.record(a, point=point, result={"status": status, "error": "x"},
                              method="random", seed=1)
            again = db.record(b, point=point, result=result_for(point, fidelity="model", seed=1),
                              method="bo", seed=1)
            assert again.id == first.id and again.status == "ok" and again.method == "bo"
            assert again.error is None and db.rows()[-1] == again
            assert db.trials(a)[-1] == again  # the sweep told the failure sees the new result
        assert len(db.rows()) == 2


def test_a_db_of_another_space_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "runs.db"
    _open(path, "h1").close()
    before = path.read_bytes()
    with pytest.raises(InputError) as info:
        _open(path, "h2")
    message = str(info.value)
    assert "\n" not in message
    assert message == (f"{path}: results of space 'tiny' as it was (hash h1); its parameters, "
                       "budgets, objective or workload files have changed since (hash h2); "
                       "use another --db")
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_results_db_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("hello, I am not SQLite" * 100)
    with pytest.raises(InputError, match=r"notes.db: not a hwloop results database"):
        _open(path)


def test_best_is_the_lowest_feasible_objective(tmp_path):
    with _open(tmp_path / "runs.db") as db:
        sweep = db.new_sweep(method="random", seed=0, fidelity="model", budget=3)
        for x in (0, 3, 5):
            point = {"x": x}
            db.record(sweep, point=point, result=result_for(point, fidelity="model", seed=0),
                      method="random", seed=0)
        bad = {"x": 3.5}
        db.record(sweep, point=bad, method="random", seed=0, result={
            **result_for(bad, fidelity="model", seed=0), "status": "infeasible",
            "feasible": False, "infeasible_kind": "measured", "objective": 0.0})
        assert db.best().params == {"x": 3}
        assert db.find_sweep(method="random", seed=0, fidelity="model").id == sweep.id
        assert db.find_sweep(method="random", seed=1, fidelity="model") is None


def test_opening_a_db_another_process_is_creating_waits_for_its_schema(tmp_path):
    import threading
    import time

    from hwloop.search.db import _SCHEMA

    path = tmp_path / "z.db"
    creator = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    creator.execute("PRAGMA journal_mode = WAL")
    creator.execute("BEGIN IMMEDIATE")  # what ResultsDB.open holds while it writes the schema
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            creator.execute(statement)
    creator.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1'), "
                    "('space_name', 'tiny'), ('space_hash', 'h1')")
    threading.Timer(0.5, creator.execute, ["COMMIT"]).start()
    started = time.monotonic()
    with _open(path) as db:
        assert db.space_hash == "h1"
    assert time.monotonic() - started >= 0.4
    creator.close()


def test_two_processes_creating_one_db_both_open_it(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for i in range(5):
        with ctx.Pool(2) as pool:
            results = pool.map(_open_and_record, [(tmp_path / f"z{i}.db", n) for n in (1, 2)])
        assert results == ["ok", "ok"]
        with _open(tmp_path / f"z{i}.db") as db:
            assert len(db.sweeps()) == 2


def _open_and_record(args):
    path, seed = args
    with _open(path) as db:
        db.new_sweep(method="random", seed=seed, fidelity="model", budget=1)
    return "ok"


def _one_row_db(path):
    with _open(path) as db:
        sweep = db.new_sweep(method="random", seed=0, fidelity="model", budget=2)
        for x in (1, 2):
            point = {"x": x}
            db.record(sweep, point=point, result=result_for(point, fidelity="model", seed=0),
                      method="random", seed=0)
    return path


@pytest.mark.parametrize("column, value, message", [
    ("metrics", "{bad", "metrics is not JSON"),
    ("params", "[1]", "params is not a JSON object: '[1]'"),
    ("metrics", '{"edp": "x"}', "metrics.edp is not a number: 'x'"),
    ("result", "null", "result is not a JSON object: 'null'"),
    # each went into db export's Parquet columns: a pyarrow traceback
    ("finished_at", "yesterday", "finished_at is not a number: 'yesterday'"),
    ("wall_s", "slow", "wall_s is not a number: 'slow'"),
    ("seed", "s", "seed is not an integer: 's'"),
    # best --json printed it as Infinity: not JSON (a failed row's metrics may be infinite)
    ("objective", float("inf"), "objective is not a finite number: inf"),
    ("error", b"\x00\xff", "error is not text: b'\\x00\\xff'"),
])
def test_a_damaged_row_is_a_one_line_error_naming_the_db_and_the_row(tmp_path, column, value,
                                                                       message):
    path = _one_row_db(tmp_path / "runs.db")
    with sqlite3.connect(path) as raw:
        raw.execute(f"UPDATE evaluations SET {column} = ? WHERE id = 2", (value,))
    with ResultsDB.open_existing(path) as db:
        assert db.lookup(params_hash({"x": 1}), "model").id == 1  # row 1 alone is fine
        for read in (db.rows, db.iter_flat, lambda: db.trials(1)):
            with pytest.raises(InputError) as info:
                list(read())
            assert str(info.value) == f"{path}: evaluation 2: {message}"


@pytest.mark.parametrize("edit, message", [
    ("UPDATE meta SET value = '99' WHERE key = 'schema_version'",
     "written by a newer hwloop (schema 99; this hwloop reads schema 1): upgrade hwloop to use "
     "it"),
    ("UPDATE meta SET value = 'one' WHERE key = 'schema_version'",
     "damaged results database: schema_version 'one' is not a number"),
    ("DELETE FROM meta WHERE key = 'schema_version'",
     "damaged results database: its meta table has no schema_version"),
    ("DELETE FROM meta WHERE key = 'space_name'",
     "damaged results database: its meta table has no space_name"),
    ("DELETE FROM meta", "damaged results database: its meta table is empty"),
    # best --json and report died with TypeErrors (bytes in JSON, in html.escape)
    ("UPDATE meta SET value = x'ff' WHERE key = 'space_name'",
     "damaged results database: its meta space_name is not text: b'\\xff'"),
    ("UPDATE meta SET value = x'ff' WHERE key = 'objective'",
     "damaged results database: its meta objective is not text: b'\\xff'"),
    # best, report, --resume and --warm-start read these tables: sqlite3.OperationalError or
    # IndexError tracebacks
    ("DROP TABLE trials", "damaged results database: it has no table 'trials'"),
    ("DROP TABLE sweeps", "damaged results database: it has no table 'sweeps'"),
    ("ALTER TABLE evaluations DROP COLUMN seed",
     "damaged results database: table evaluations has no column 'seed'"),
    ("ALTER TABLE trials DROP COLUMN reused",
     "damaged results database: table trials has no column 'reused'"),
])
def test_a_db_of_a_newer_schema_or_damaged_is_refused(tmp_path, edit, message):
    path = _one_row_db(tmp_path / "runs.db")
    with sqlite3.connect(path) as raw:
        raw.execute(edit)
    raw.close()
    before = path.read_bytes()
    for opening in (lambda: ResultsDB.open_existing(path), lambda: _open(path)):
        with pytest.raises(InputError) as info:
            opening()
        assert str(info.value) == f"{path}: {message}"
    assert path.read_bytes() == before  # nothing written, not even a sweep row


def test_a_sweep_does_not_append_to_a_db_of_a_newer_schema(tmp_path):
    from hwloop.search.space import load_space
    from hwloop.search.sweep import run_sweep
    from tests.search.sweep_fakes import fake_evaluate

    space = load_space(Path(__file__).resolve().parents[2] / "constraints" / "tiny.toml")
    path = tmp_path / "runs.db"
    ResultsDB.open(path, space_name=space.name, space_hash=space.hash).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(InputError, match=r"written by a newer hwloop \(schema 2;"):
        run_sweep(space, method="random", budget=2, db_path=path, workers=1,
                  evaluator=fake_evaluate)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM sweeps").fetchone()[0] == 0
    raw.close()


def test_a_folder_is_not_a_results_db(tmp_path):
    for opening in (ResultsDB.open_existing, _open):
        with pytest.raises(InputError) as info:
            opening(tmp_path)
        assert str(info.value) == f"{tmp_path}: is a folder, not a results database"
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(InputError) as info:
        _open(afile / "runs.db")
    assert str(info.value) == f"{afile / 'runs.db'}: {afile} is a file, not a folder"


@pytest.mark.parametrize("options, message", [
    ("notjson", "options is not JSON"),
    ("[1]", "options is not a JSON object: '[1]'"),
    ('{"warm_start": 5}', "options warm_start is not text: 5"),
])
def test_a_sweep_with_damaged_options_is_a_one_line_error(tmp_path, options, message):
    """(--resume of a cbo or apollo sweep reads its options for the warm start it was started
    with: a JSONDecodeError, AttributeError or TypeError traceback.)"""
    path = _one_row_db(tmp_path / "runs.db")
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE sweeps SET options = ?", (options,))
    raw.close()
    with ResultsDB.open_existing(path) as db:
        sweep = db.sweeps()[0]
        with pytest.raises(InputError) as info:
            db.sweep_options(sweep)
    assert str(info.value) == f"{path}: sweep {sweep.id}: {message}"


def test_a_db_that_cannot_be_read_is_named_as_such(tmp_path, monkeypatch):
    """A results DB without read permission (chmod 000) was called 'not a hwloop results
    database (unable to open database file)'."""
    from tests.unreadable import refuse_opening

    path = _one_row_db(tmp_path / "runs.db")
    refuse_opening(monkeypatch, path)  # as chmod 000 does, even for root
    for opening in (lambda: ResultsDB.open_existing(path), lambda: _open(path)):
        with pytest.raises(InputError) as info:
            opening()
        assert str(info.value) == f"{path}: cannot read the results database: Permission denied"


def test_a_db_in_a_folder_the_user_cannot_write_in_is_read(tmp_path, monkeypatch):
    """best, report and db export of a DB in another user's folder (or on read-only media):
    SQLite cannot make the -shm file it needs to read a WAL database there, and the DB was
    refused as 'not a hwloop results database (attempt to write a readonly database)'."""
    path = _one_row_db(tmp_path / "runs.db")
    real_connect = ResultsDB._connect

    def connect(db_path, *, immutable=False):  # what SQLite does in a chmod 555 folder
        if not immutable:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real_connect(db_path, immutable=True)

    monkeypatch.setattr(ResultsDB, "_connect", staticmethod(connect))
    with ResultsDB.open_existing(path) as db:
        assert [r.params for r in db.rows()] == [{"x": 1}, {"x": 2}]
    with pytest.raises(InputError) as info:  # a sweep writes: refused, and said why
        _open(path)
    assert str(info.value) == (f"{path}: cannot open the results database for writing "
                               f"(attempt to write a readonly database)")
    (tmp_path / "runs.db-wal").write_bytes(b"")  # a writer may have it open: not read as is
    with pytest.raises(InputError, match="attempt to write a readonly database"):
        ResultsDB.open_existing(path)
