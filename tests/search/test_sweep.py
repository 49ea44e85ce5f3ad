import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwloop.errors import InputError
from hwloop.search.db import ResultsDB
from hwloop.search.space import load_space
from hwloop.search.sweep import run_sweep
from tests.search.sweep_fakes import fake_evaluate, flaky_evaluate, slow_evaluate

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "constraints" / "tiny.toml"
HWLOOP = [sys.executable, "-m", "hwloop"]


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.update(extra)
    return env


def _run(args, **env):
    return subprocess.run([*HWLOOP, *args], capture_output=True, text=True, cwd=ROOT,
                          env=_env(**env), timeout=300)


def test_failed_builds_and_hung_simulations_are_recorded_and_the_sweep_goes_on(tmp_path):
    space = load_space(TINY)
    summary = run_sweep(space, method="random", budget=24, db_path=tmp_path / "runs.db",
                        workers=2, timeout=2.0, evaluator=flaky_evaluate, seed=3)
    assert summary.told == 24 and summary.evaluated == 24  # the whole 24-point space
    with ResultsDB.open_existing(tmp_path / "runs.db") as db:
        rows = db.rows()
    by_status = {s: [r for r in rows if r.status == s] for s in ("ok", "failed", "timeout")}
    assert len(by_status["failed"]) == 4 and len(by_status["timeout"]) == 4
    assert all(r.params["rows"] == 4 and r.params["cols"] == 8 for r in by_status["failed"])
    assert all("BuildError" in r.error and r.log_path == "/tmp/fake-build.log"
               for r in by_status["failed"])
    assert all(r.params["rows"] == 4 and r.params["cols"] == 2 for r in by_status["timeout"])
    assert len(by_status["ok"]) == 16 and summary.failed == 4 and summary.timeouts == 4
    assert summary.best is not None and summary.best.objective == min(
        r.objective for r in by_status["ok"])


def test_a_second_sweep_reuses_rows_instead_of_evaluating_again(tmp_path):
    space = load_space(TINY)
    first = run_sweep(space, method="random", budget=8, db_path=tmp_path / "runs.db",
                      workers=2, evaluator=slow_evaluate, seed=1)
    again = run_sweep(space, method="random", budget=8, db_path=tmp_path / "runs.db",
                      workers=2, evaluator=slow_evaluate, seed=1)
    assert first.evaluated == 8 and again.evaluated == 0 and again.reused == 8
    more = run_sweep(space, method="random", budget=12, db_path=tmp_path / "runs.db",
                     workers=2, evaluator=slow_evaluate, seed=1, resume=True)
    assert more.resumed == 8 and more.told == 12 and more.evaluated == 4
    with ResultsDB.open_existing(tmp_path / "runs.db") as db:
        assert len(db.rows()) == 12


def test_kill_9_mid_sweep_then_resume_loses_and_repeats_nothing(tmp_path):
    db_path = tmp_path / "runs.db"
    budget = 18
    args = ["sweep", "--space", str(TINY), "--budget", str(budget), "--workers", "2",
            "--db", str(db_path), "--seed", "5", "--quiet"]
    env = _env(HWLOOP_SWEEP_EVALUATOR="tests.search.sweep_fakes:slow_evaluate",
               HWLOOP_FAKE_SLEEP="0.4")
    proc = subprocess.Popen([*HWLOOP, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = 0
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
        if db_path.exists():
            try:
                with sqlite3.connect(db_path) as raw:
                    done = raw.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= 6:
                break
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db_path) as raw:
        killed_at = raw.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    assert 6 <= killed_at < budget
    resumed = _run([*args, "--resume"], HWLOOP_SWEEP_EVALUATOR=env["HWLOOP_SWEEP_EVALUATOR"],
                   HWLOOP_FAKE_SLEEP="0.05")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{budget}/{budget} told ({budget - killed_at} evaluated, 0 reused, " \
           f"{killed_at} resumed)" in resumed.stdout
    with sqlite3.connect(db_path) as raw:
        hashes = [h for (h,) in raw.execute("SELECT params_hash FROM evaluations")]
        trials = raw.execute("SELECT COUNT(*), COUNT(DISTINCT evaluation_id) FROM trials "
                             "WHERE sweep_id = 1").fetchone()
        sweeps = raw.execute("SELECT COUNT(*) FROM sweeps").fetchone()[0]
    assert len(hashes) == budget and len(set(hashes)) == budget
    assert trials == (budget, budget) and sweeps == 1


@pytest.mark.parametrize("caches", [("a", "a"), ("a", "b")], ids=["one-cache", "two-caches"])
def test_a_sweep_runs_in_one_process_at_a_time(tmp_path, caches):
    # drivers with different HWLOOP_CACHE (two users, a container and its host) see the lock
    db_path = tmp_path / "runs.db"
    args = ["sweep", "--space", str(TINY), "--budget", "18", "--workers", "1",
            "--db", str(db_path), "--seed", "5", "--quiet"]
    env = _env(HWLOOP_SWEEP_EVALUATOR="tests.search.sweep_fakes:slow_evaluate",
               HWLOOP_FAKE_SLEEP="0.5", HWLOOP_CACHE=str(tmp_path / caches[0]))
    first = subprocess.Popen([*HWLOOP, *args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        done = 0
        while time.time() < deadline and first.poll() is None and done < 1:
            time.sleep(0.1)
            try:
                with sqlite3.connect(db_path) as raw:
                    done = raw.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
            except sqlite3.OperationalError:
                continue
        assert first.poll() is None and done >= 1, first.communicate()
        second = _run([*args, "--resume"], HWLOOP_SWEEP_EVALUATOR=env["HWLOOP_SWEEP_EVALUATOR"],
                      HWLOOP_CACHE=str(tmp_path / caches[1]))
        assert second.returncode == 2
        assert second.stderr == (f"hwloop: error: sweep 1 of {db_path} is running in another "
                                 f"process (pid {first.pid}): let it finish, or stop it and "
                                 "resume\n")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    resumed = _run([*args, "--resume"], HWLOOP_SWEEP_EVALUATOR=env["HWLOOP_SWEEP_EVALUATOR"],
                   HWLOOP_FAKE_SLEEP="0.01", HWLOOP_CACHE=str(tmp_path / caches[1]))
    assert resumed.returncode == 0, resumed.stderr
    assert "18/18 told" in resumed.stdout
    assert (tmp_path / "runs.db.lock").is_file()  # beside the database, in neither cache


@pytest.mark.parametrize("args, message", [
    (["--budget", "0"], "hwloop: error: --budget must be at least 1, not 0"),
    (["--budget", "3", "--seed", "-1"],
     "hwloop: error: --seed must be a non-negative integer, not -1"),
    (["--budget", "3", "--workers", "0"], "hwloop: error: --workers must be at least 1, not 0"),
    (["--budget", "3", "--timeout", "-1"],
     "hwloop: error: --timeout must be a positive number of seconds, not -1.0"),
    (["--budget", "3", "--fidelity", "gates"],
     "hwloop: error: --fidelity must be one of rtl, model, not 'gates'"),
    (["--budget", "3", "--scheduler", "localhost:8786"],
     "hwloop: error: --scheduler localhost:8786: not a Dask address (like tcp://127.0.0.1:8786)"),
    # the results DB keeps the seed as a 64-bit integer: it was an OverflowError traceback
    (["--budget", "3", "--seed", str(2**63)],
     "hwloop: error: --seed must be below 2**63 (the results DB keeps it as a 64-bit integer), "
     "not 9223372036854775808"),
    # addresses Dask's client refuses in its constructor: a traceback, and another one 10 s
    # later when the half-made client was collected
    (["--budget", "3", "--scheduler", "tcp://127.0.0.1"],
     "hwloop: error: --scheduler tcp://127.0.0.1: not a Dask address (missing port number in "
     "address '127.0.0.1')"),
    (["--budget", "3", "--scheduler", "tcp://127.0.0.1:port"],
     "hwloop: error: --scheduler tcp://127.0.0.1:port: not a Dask address (invalid literal for "
     "int() with base 10: 'port')"),
    (["--budget", "3", "--scheduler", "inproc://127.0.0.1/1/1"],
     "hwloop: error: --scheduler inproc://127.0.0.1/1/1: not a Dask address (an inproc "
     "scheduler is reachable from its own process only)"),
    (["--budget", "3", "--scheduler", "ucx://127.0.0.1:9"],
     "hwloop: error: --scheduler ucx://127.0.0.1:9: Dask cannot connect by protocol ucx here "
     "(its backend is not installed)"),
    (["--budget", "3", "--scheduler", "tls://127.0.0.1:9"],
     "hwloop: error: --scheduler tls://127.0.0.1:9: TLS needs a CA file and a client "
     "certificate in the Dask configuration (distributed.comm.tls.ca-file, "
     "distributed.comm.tls.client.cert)"),
    (["--budget", "3", "--method", "annealing"],
     "hwloop: error: unknown search method 'annealing' (known: random, bo, cbo, apollo, "
     "optuna-tpe)"),
])
def test_bad_sweep_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    db_path = tmp_path / "runs.db"
    proc = _run(["sweep", "--space", str(TINY), "--db", str(db_path), "--quiet", *args])
    assert proc.returncode == 2
    assert proc.stderr.strip() == message
    assert not db_path.exists()


def test_an_unreachable_scheduler_is_one_line_exit_2(tmp_path):
    db_path = tmp_path / "runs.db"
    proc = _run(["sweep", "--space", str(TINY), "--db", str(db_path), "--budget", "2",
                 "--scheduler", "tcp://127.0.0.1:9"])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "hwloop: error: --scheduler tcp://127.0.0.1:9: cannot connect (")
    assert not db_path.exists()


def test_a_db_of_another_space_is_refused_untouched(tmp_path):
    db_path = tmp_path / "runs.db"
    with ResultsDB.open(db_path, space_name="edge", space_hash="0123"):
        pass
    before = db_path.read_bytes()
    proc = _run(["sweep", "--space", str(TINY), "--db", str(db_path), "--budget", "2"])
    assert proc.returncode == 2
    space = load_space(TINY)
    assert proc.stderr.strip() == (
        f"hwloop: error: {db_path}: results of space 'edge' (hash 0123), not of 'tiny' "
        f"(hash {space.hash}); use another --db")
    assert db_path.read_bytes() == before


def test_a_bad_space_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nobjective = "edp"\n[hardware\nrows = 4\n')
    proc = _run(["sweep", "--space", str(bad), "--db", str(tmp_path / "runs.db"),
                 "--budget", "2"])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hwloop: error: {bad}:3")
    assert not (tmp_path / "runs.db").exists()


def test_warm_start_and_best(tmp_path):
    space = load_space(TINY)
    run_sweep(space, method="random", budget=6, db_path=tmp_path / "other.db", workers=1,
              evaluator=slow_evaluate, seed=2)
    summary = run_sweep(space, method="cbo", budget=4, db_path=tmp_path / "runs.db",
                        workers=1, evaluator=slow_evaluate, seed=9,
                        warm_start=tmp_path / "other.db")
    assert summary.told == 4
    again = run_sweep(space, method="cbo", budget=5, db_path=tmp_path / "runs.db",
                      workers=1, evaluator=slow_evaluate, seed=9, resume=True)
    assert again.told == 5  # resumed with the same warm start, found in the DB
    proc = _run(["best", "--db", str(tmp_path / "runs.db"), "--json"])
    assert proc.returncode == 0
    import json
    best = json.loads(proc.stdout)
    assert best["objective"] == summary.best.objective and best["params"] == summary.best.params
    (tmp_path / "other.db").rename(tmp_path / "moved.db")
    with pytest.raises(InputError) as info:
        run_sweep(space, method="cbo", budget=6, db_path=tmp_path / "runs.db", workers=1,
                  evaluator=slow_evaluate, seed=9, resume=True)
    assert str(info.value) == (f"--resume: this sweep was warm-started from "
                               f"{tmp_path / 'other.db'}, which is gone; pass --warm-start")
    empty = tmp_path / "empty.db"
    with ResultsDB.open(empty, space_name="tiny", space_hash=space.hash):
        pass
    proc = _run(["best", "--db", str(empty)])
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"hwloop: error: {empty}: no feasible design in it")


def test_a_budget_larger_than_the_space_stops_when_the_space_is_exhausted(tmp_path):
    space = load_space(TINY)
    summary = run_sweep(space, method="random", budget=30, db_path=tmp_path / "runs.db",
                        workers=2, evaluator=slow_evaluate, seed=0)
    assert summary.exhausted and summary.told == summary.evaluated == space.size == 24


RTL_SPACE = """\
name = "rtl-e2e"
objective = "cycles"
fidelity = "rtl"

[hardware]
rows = { values = [2] }
cols = { values = [2, 4] }
dataflow = { values = ["os", "ws"] }

[budgets]
area = 1.0e9

[[workloads]]
name = "tiny"
"""


@pytest.mark.slow
@pytest.mark.rtl
def test_an_rtl_in_the_loop_sweep_end_to_end(tmp_path):
    """Real Verilator builds and cocotb co-simulations (bit-exact checked) of 2x2/2x4 arrays."""
    space_file = tmp_path / "space.toml"
    space_file.write_text(RTL_SPACE)
    db_path = tmp_path / "runs.db"
    proc = _run(["sweep", "--space", str(space_file), "--budget", "3", "--workers", "2",
                 "--db", str(db_path), "--timeout", "900", "--seed", "1", "--quiet",
                 "--log-dir", str(tmp_path / "logs")])
    assert proc.returncode == 0, proc.stderr
    assert "3/3 told (3 evaluated" in proc.stdout
    with ResultsDB.open_existing(db_path) as db:
        rows = db.rows()
    assert len(rows) == 3
    for row in rows:  # ok = built, simulated and bit-exact against the golden model
        assert row.status == "ok", row.error
        assert row.fidelity == "rtl" and row.objective == row.metrics["cycles"] > 0
        assert row.tool_versions.get("verilator") not in (None, "missing")
    best = _run(["best", "--db", str(db_path), "--json"])
    assert best.returncode == 0
    report = _run(["report", "--db", str(db_path), "-o", str(tmp_path / "report")])
    assert report.returncode == 0 and (tmp_path / "report" / "pareto.png").exists()


def test_sigterm_stops_the_sweep_like_ctrl_c_and_keeps_finished_rows(tmp_path):
    db_path = tmp_path / "runs.db"
    proc = subprocess.Popen(
        [*HWLOOP, "sweep", "--space", str(TINY), "--budget", "20", "--workers", "2", "--db",
         str(db_path), "--quiet"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
        env=_env(HWLOOP_SWEEP_EVALUATOR="tests.search.sweep_fakes:slow_evaluate",
                 HWLOOP_FAKE_SLEEP="1.0"))
    deadline = time.time() + 60
    while time.time() < deadline and not db_path.exists():
        time.sleep(0.1)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "hwloop: interrupted"
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = raw.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    assert rows < 20


def test_resume_re_tells_a_model_based_method(tmp_path):
    space = load_space(TINY)
    first = run_sweep(space, method="optuna-tpe", budget=5, db_path=tmp_path / "runs.db",
                      workers=2, evaluator=slow_evaluate, seed=11)
    more = run_sweep(space, method="optuna-tpe", budget=9, db_path=tmp_path / "runs.db",
                     workers=2, evaluator=slow_evaluate, seed=11, resume=True)
    assert first.told == 5 and more.resumed == 5 and more.told == 9
    assert more.sweep.id == first.sweep.id
    with ResultsDB.open_existing(tmp_path / "runs.db") as db:
        told = db.trials(more.sweep)
    assert len(told) == 9 and len({r.params_hash for r in told}) == 9  # nothing proposed twice


def _summary_line(stdout):
    return next(line for line in stdout.splitlines() if line.startswith("sweep "))


def test_reused_rows_count_by_status_and_retry_failed_evaluates_them_again(tmp_path):
    db_path = tmp_path / "to.db"
    args = ["sweep", "--space", str(TINY), "--budget", "2", "--workers", "2", "--db",
            str(db_path), "--quiet"]
    slow = "tests.search.sweep_fakes:slow_evaluate"
    first = _run([*args, "--timeout", "1"], HWLOOP_SWEEP_EVALUATOR=slow, HWLOOP_FAKE_SLEEP="30")
    assert first.returncode == 0, first.stderr
    assert "2/2 told (2 evaluated, 0 reused, 0 resumed), 0 feasible, 0 infeasible, 0 failed, " \
           "2 timeout, " in _summary_line(first.stdout)
    again = _run([*args, "--timeout", "600"], HWLOOP_SWEEP_EVALUATOR=slow,
                 HWLOOP_FAKE_SLEEP="0")
    assert again.returncode == 0, again.stderr
    assert "2/2 told (0 evaluated, 2 reused, 0 resumed), 0 feasible, 0 infeasible, 0 failed, " \
           "2 timeout, " in _summary_line(again.stdout)
    with ResultsDB.open_existing(db_path) as db:
        before = {r.id: r.params for r in db.rows()}
    retried = _run([*args, "--timeout", "600", "--retry-failed"],
                   HWLOOP_SWEEP_EVALUATOR=slow, HWLOOP_FAKE_SLEEP="0")
    assert retried.returncode == 0, retried.stderr
    assert "2/2 told (2 evaluated, 0 reused, 0 resumed), 2 feasible, 0 infeasible, 0 failed, " \
           "0 timeout, " in _summary_line(retried.stdout)
    with ResultsDB.open_existing(db_path) as db:
        rows = db.rows()
    assert {r.id: r.params for r in rows} == before and {r.status for r in rows} == {"ok"}


def test_resumed_and_reused_rows_count_by_status_in_the_summary(tmp_path):
    space = load_space(TINY)
    first = run_sweep(space, method="random", budget=24, db_path=tmp_path / "runs.db",
                      workers=2, timeout=2.0, evaluator=flaky_evaluate, seed=3)
    again = run_sweep(space, method="random", budget=24, db_path=tmp_path / "runs.db",
                      workers=2, timeout=2.0, evaluator=flaky_evaluate, seed=3)
    more = run_sweep(space, method="random", budget=24, db_path=tmp_path / "runs.db",
                     workers=2, evaluator=flaky_evaluate, seed=3, resume=True)
    for summary in (first, again, more):
        counts = (summary.feasible, summary.infeasible, summary.failed, summary.timeouts)
        assert counts == (16, 0, 4, 4) and sum(counts) == summary.told == 24
    assert again.reused == 24 and more.resumed == 24


def test_an_edited_workload_file_makes_another_space(tmp_path):
    csv_path = tmp_path / "w.csv"
    csv_path.write_text("Layer name, M, N, K,\nl1, 16, 16, 16,\n")
    (tmp_path / "w.toml").write_text('name = "w"\nobjective = "cycles"\nworkloads = ["w.csv"]\n'
                                     '[hardware]\nrows = 4\ncols = 4\n')
    db_path = tmp_path / "w.db"
    old = load_space(tmp_path / "w.toml")
    run_sweep(old, method="random", budget=1, db_path=db_path, workers=1,
              evaluator=slow_evaluate)
    csv_path.write_text("Layer name, M, N, K,\nl1, 64, 64, 64,\n")
    new = load_space(tmp_path / "w.toml")
    with pytest.raises(InputError) as info:
        run_sweep(new, method="random", budget=1, db_path=db_path, workers=1,
                  evaluator=slow_evaluate)
    assert str(info.value) == (
        f"{db_path}: results of space 'w' as it was (hash {old.hash}); its parameters, budgets, "
        f"objective or workload files have changed since (hash {new.hash}); use another --db")


def test_an_unknown_method_is_exactly_one_line_with_the_progress_display(tmp_path):
    proc = _run(["sweep", "--space", str(TINY), "--db", str(tmp_path / "runs.db"), "--budget",
                 "1", "--method", "foo"])
    assert proc.returncode == 2
    assert proc.stderr == "hwloop: error: unknown search method 'foo' (known: random, bo, cbo, " \
                          "apollo, optuna-tpe)\n"


def test_a_log_dir_that_is_a_file_is_one_line_exit_2(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for log_dir, message in ((afile, "exists and is a file, not a folder"),
                             (afile / "sub", f"{afile} is a file, not a folder")):
        proc = _run(["sweep", "--space", str(TINY), "--db", str(tmp_path / "runs.db"),
                     "--budget", "1", "--quiet", "--log-dir", str(log_dir)])
        assert proc.returncode == 2
        assert proc.stderr == f"hwloop: error: --log-dir {log_dir}: {message}\n"
    assert not (tmp_path / "runs.db").exists()


def test_best_prints_counts_as_integers_and_refuses_a_bad_fidelity(tmp_path):
    db_path = tmp_path / "runs.db"
    with ResultsDB.open(db_path, space_name="tiny", space_hash="h", objective="cycles") as db:
        sweep = db.new_sweep(method="random", seed=0, fidelity="model", budget=1)
        point = {"rows": 2}
        db.record(sweep, point=point, method="random", seed=0, result={
            "point": point, "status": "ok", "feasible": True, "objective": 1065210.0,
            "metrics": {"cycles": 1065210.0, "edp": 1.5e11 + 0.25, "utilization": 0.5}})
    proc = _run(["best", "--db", str(db_path)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        "  cycles = 1,065,210", "  rows           2", "  cycles         1,065,210",
        "  edp            1.5e+11", "  utilization    0.5"]
    proc = _run(["best", "--db", str(db_path), "--fidelity", "foo"])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("hwloop best: error: argument --fidelity: invalid choice: 'foo' "
                           "(choose from 'rtl', 'model')\n")


@pytest.mark.parametrize("method", ["random", "bo", "cbo", "apollo", "optuna-tpe"])
def test_every_method_proposes_the_typed_values_of_a_boolean_dimension(tmp_path, method):
    text = TINY.read_text().replace(
        'ifmap_kib = { values = [4, 16] }',
        'ifmap_kib = { values = [4, 16] }\nread_ahead = { values = [false, true] }')
    (tmp_path / "ra.toml").write_text(text)
    space = load_space(tmp_path / "ra.toml")
    summary = run_sweep(space, method=method, budget=12, db_path=tmp_path / "ra.db",
                        workers=1, evaluator=fake_evaluate, seed=0)
    assert summary.told == 12
    assert {type(r.params["read_ahead"]) for r in summary.rows} == {bool}


def test_a_sweep_that_fails_before_its_first_result_leaves_no_sweep_behind(tmp_path):
    class Boom(Exception):
        pass

    def on_start(summary):
        raise Boom

    with pytest.raises(Boom):
        run_sweep(load_space(TINY), method="random", budget=4, db_path=tmp_path / "runs.db",
                  workers=1, evaluator=fake_evaluate, on_start=on_start)
    with ResultsDB.open_existing(tmp_path / "runs.db") as db:
        assert db.sweeps() == []


@pytest.mark.parametrize(("option", "message"), [
    (["--workers", "7"], "--workers has no effect with --scheduler (the cluster's workers run "
                         "the evaluations)"),
    (["--log-dir", "dlogs"], "--log-dir has no effect with --scheduler (the cluster's workers "
                             "write their own logs)"),
])
def test_local_worker_options_with_a_scheduler_are_refused(tmp_path, option, message):
    if option[0] == "--log-dir":
        option = ["--log-dir", str(tmp_path / "dlogs")]
    # nothing listens on this port: the check comes before any connection
    proc = _run(["sweep", "--space", str(TINY), "--budget", "4", "--db", str(tmp_path / "d.db"),
                 "--scheduler", "tcp://127.0.0.1:8799", *option])
    assert proc.returncode == 2
    assert proc.stderr == f"hwloop: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("method", ["random", "bo", "optuna-tpe"])
def test_a_warm_start_for_a_method_that_ignores_it_is_refused(tmp_path, method):
    proc = _run(["sweep", "--space", str(TINY), "--budget", "4", "--method", method,
                 "--db", str(tmp_path / "runs.db"), "--warm-start", str(tmp_path / "other.db")])
    assert proc.returncode == 2
    assert proc.stderr == (f"hwloop: error: --warm-start has no effect with --method {method} "
                           f"(only cbo and apollo use it)\n")
    assert list(tmp_path.iterdir()) == []


def test_resuming_a_method_that_ignores_warm_starts_does_not_need_the_stored_one(tmp_path):
    space = load_space(TINY)
    # a sweep stored by an earlier hwloop, which accepted --warm-start with random
    with ResultsDB.open(tmp_path / "runs.db", space_name=space.name,
                        space_hash=space.hash) as db:
        db.new_sweep(method="random", seed=0, fidelity="model", budget=2,
                     options={"warm_start": str(tmp_path / "gone.db")})
    summary = run_sweep(space, method="random", budget=3, db_path=tmp_path / "runs.db",
                        workers=1, evaluator=slow_evaluate, resume=True)
    assert summary.told == 3


def test_resuming_with_a_budget_below_the_results_so_far_is_refused(tmp_path):
    space = load_space(TINY)
    run_sweep(space, method="random", budget=6, db_path=tmp_path / "runs.db", workers=1,
              evaluator=slow_evaluate)
    before = (tmp_path / "runs.db").read_bytes()
    proc = _run(["sweep", "--space", str(TINY), "--budget", "5", "--resume",
                 "--db", str(tmp_path / "runs.db")])
    assert proc.returncode == 2
    assert proc.stderr == "hwloop: error: --budget 5 is below the 6 results this sweep " \
                          "already has\n"
    with ResultsDB.open_existing(tmp_path / "runs.db") as db:
        assert [s.budget for s in db.sweeps()] == [6]
    assert (tmp_path / "runs.db").read_bytes() == before


def test_a_db_priced_with_other_tables_refuses_the_sweep(tmp_path, monkeypatch):
    """Edited area or energy tables make new prices: a sweep would mix old and new rows."""
    import hwloop.search.sweep as sweep_module

    space = load_space(TINY)
    db_path = tmp_path / "runs.db"
    run_sweep(space, method="random", budget=2, db_path=db_path, workers=1,
              evaluator=slow_evaluate, seed=1)
    monkeypatch.setattr(sweep_module, "prices", lambda: "0123456789abcdef")
    with pytest.raises(InputError) as info:
        run_sweep(space, method="random", budget=3, db_path=db_path, workers=1,
                  evaluator=slow_evaluate, seed=1, resume=True)
    with ResultsDB.open_existing(db_path) as db:
        recorded = db.meta["prices"]
        assert len(db.rows()) == 2  # nothing written
    assert str(info.value) == (
        f"{db_path}: results priced with other area or energy tables (hash {recorded}; now "
        "0123456789abcdef): their areas and energies would mix with new ones; use another --db")
    monkeypatch.setattr(sweep_module, "prices", lambda: recorded)
    assert run_sweep(space, method="random", budget=3, db_path=db_path, workers=1,
                     evaluator=slow_evaluate, seed=1, resume=True).told == 3


def test_warm_start_counts_a_point_once_at_the_sweeps_fidelity(tmp_path):
    """A point the other DB holds at both fidelities is one observation: at the warm-started
    sweep's fidelity, else at the first of FIDELITIES the DB has it at."""
    from hwloop.search.sweep import load_warm_start

    space = load_space(TINY)
    other = tmp_path / "other.db"
    for fidelity in ("model", "rtl"):
        run_sweep(space, method="random", budget=3, db_path=other, workers=1,
                  evaluator=slow_evaluate, seed=2, fidelity=fidelity)
    with ResultsDB.open_existing(other) as db:
        rows = db.rows()
    # the same three points at each fidelity; make the rtl rows tell apart from the model ones
    assert len(rows) == 6 and len({r.params_hash for r in rows}) == 3
    with sqlite3.connect(other) as conn:
        conn.execute("UPDATE evaluations SET result = json_set(result, '$.metrics.cycles', 7777)"
                     " WHERE fidelity = 'rtl'")
    for fidelity, cycles in (("rtl", 7777), ("model", None), (None, 7777)):
        pairs = load_warm_start(other, space, fidelity=fidelity)
        assert len(pairs) == 3
        seen = {result.metrics["cycles"] == 7777 for _, result in pairs}
        assert seen == {cycles == 7777}


def test_a_db_that_cannot_be_written_is_a_one_line_error_and_keeps_its_rows(tmp_path):
    # a full disk (here: a file size limit, which fails SQLite's writes the same way) or a
    # read-only DB file was a sqlite3.OperationalError traceback, and the ROLLBACK after
    # SQLite had rolled back itself hid the cause ("cannot rollback - no transaction")
    import resource

    db_path = tmp_path / "runs.db"
    args = ["sweep", "--space", str(TINY), "--budget", "2", "--workers", "1", "--db",
            str(db_path), "--quiet"]
    evaluator = "tests.search.sweep_fakes:fake_evaluate"
    assert _run(args, HWLOOP_SWEEP_EVALUATOR=evaluator).returncode == 0
    limit = db_path.stat().st_size + 8192

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    args[4] = "24"
    full = subprocess.run([*HWLOOP, *args, "--resume"], capture_output=True, text=True,
                          cwd=ROOT, env=_env(HWLOOP_SWEEP_EVALUATOR=evaluator), timeout=300,
                          preexec_fn=small_files)
    assert full.returncode == 2, full.stderr
    assert full.stderr.startswith(f"hwloop: error: {db_path}: cannot write (disk I/O error)")
    assert full.stderr.count("\n") == 1
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = raw.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    raw.close()
    assert 2 <= kept < 24
    resumed = _run([*args, "--resume"], HWLOOP_SWEEP_EVALUATOR=evaluator)
    assert resumed.returncode == 0, resumed.stderr
    assert f"24/24 told ({24 - kept} evaluated, 0 reused, {kept} resumed)" in resumed.stdout


def test_a_db_deleted_during_the_sweep_stops_it_instead_of_losing_its_results(tmp_path):
    # SQLite goes on writing to the unlinked file: the sweep said "results in runs.db" of a
    # file that was gone, every result after the deletion lost
    folder = tmp_path / "results"
    folder.mkdir()
    db_path = folder / "runs.db"

    def delete_the_folder(summary, row):
        if summary.told == 2:
            shutil.rmtree(folder)

    with pytest.raises(InputError) as info:
        run_sweep(load_space(TINY), method="random", budget=8, db_path=db_path, workers=1,
                  evaluator=fake_evaluate, on_result=delete_the_folder)
    assert str(info.value) == (f"{db_path}: the results database was deleted or moved away "
                               f"while the sweep ran; nothing more is written to it")


@pytest.mark.parametrize("kib", [0, 8, 16, 24, 32, 40])
def test_a_new_db_that_cannot_be_written_is_a_one_line_error(tmp_path, kib):
    # a full disk while the DB was made: "not a hwloop results database (disk I/O error)" of
    # a DB hwloop was making, or a traceback when the schema's COMMIT failed
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, resource.RLIM_INFINITY))

    db_path = tmp_path / "runs.db"
    made = subprocess.run(
        [*HWLOOP, "sweep", "--space", str(TINY), "--budget", "2", "--workers", "1", "--db",
         str(db_path), "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env=_env(HWLOOP_SWEEP_EVALUATOR="tests.search.sweep_fakes:fake_evaluate"),
        preexec_fn=small_files)
    assert made.returncode in (0, 2), made.stderr
    if made.returncode == 2:
        # making the DB, or a write of the sweep once it is made
        assert made.stderr.startswith((
            f"hwloop: error: {db_path}: cannot open the results database for writing (",
            f"hwloop: error: {db_path}: cannot write (")), made.stderr
        assert made.stderr.count("\n") == 1, made.stderr


def test_the_progress_best_of_a_resumed_sweep_counts_its_resumed_rows(tmp_path):
    # The progress line counted the resumed rows (feasible, infeasible, ...) but its "best"
    # only the rows evaluated after the resume: a worse best than the summary's.
    args = ["sweep", "--space", str(TINY), "--workers", "1", "--db", str(tmp_path / "r.db")]
    env = {"HWLOOP_SWEEP_EVALUATOR": "tests.search.sweep_fakes:slow_evaluate",
           "HWLOOP_FAKE_SLEEP": "0"}
    first = _run([*args, "--budget", "12", "--quiet"], **env)
    assert first.returncode == 0, first.stderr
    resumed = _run([*args, "--budget", "13", "--resume"], **env)  # its one new row: not the best
    assert resumed.returncode == 0, resumed.stderr
    summary_best = float(resumed.stdout.split("best edp = ")[1].split(":")[0])
    progress = [line for line in resumed.stderr.splitlines() if "feasible 13" in line][-1]
    assert float(progress.split("best ")[-1]) == pytest.approx(summary_best, rel=1e-3)
