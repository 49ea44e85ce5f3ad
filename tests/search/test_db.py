import json
import sqlite3

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
    creator.execute("INSERT INTO meta (key, value) VALUES ('space_name', 'tiny'), "
                    "('space_hash', 'h1')")
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
