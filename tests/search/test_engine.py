import os
import threading
import time
from pathlib import Path

import pytest

from hwloop.search import engine as engine_module
from hwloop.search.engine import LocalEngine
from hwloop.search.space import load_space
from tests.search.sweep_fakes import fake_evaluate, space_evaluate

TINY = Path(__file__).resolve().parents[2] / "constraints" / "tiny.toml"


def _drain(engine, n, limit=60.0):
    outcomes = []
    end = time.time() + limit
    while len(outcomes) < n and time.time() < end:
        outcomes += engine.poll(wait=0.5)
    return {o.key: o for o in outcomes}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_failures_timeouts_and_crashes_are_recorded_and_the_pool_goes_on(tmp_path):
    pidfile = tmp_path / "child.pid"
    with LocalEngine(evaluator=fake_evaluate, space=None, fidelity="model", seed=7,
                     workers=2, timeout=4.0) as engine:
        engine.submit("hang", {"mode": "hang", "pidfile": str(pidfile)})
        engine.submit("fail", {"mode": "fail"})
        engine.submit("crash", {"mode": "crash"})
        engine.submit("noisy", {"mode": "noisy", "x": 3})
        for i in range(4):
            engine.submit(f"ok{i}", {"x": i})
        got = _drain(engine, 8)
        assert engine.pending == 0
    assert set(got) == {"hang", "fail", "crash", "noisy", "ok0", "ok1", "ok2", "ok3"}
    assert got["hang"].status == "timeout" and "4 s" in got["hang"].error
    child = int(pidfile.read_text())
    end = time.time() + 10  # SIGKILL is delivered asynchronously
    while _alive(child) and time.time() < end:
        time.sleep(0.05)
    assert not _alive(child)  # the hung simulator child was killed with its worker
    assert got["fail"].status == "failed"
    assert "BuildError: Verilator build failed (fake)" in got["fail"].error
    assert got["fail"].log_path and got["fail"].log_path.endswith(".log")
    assert got["crash"].status == "failed" and "exited with code 3" in got["crash"].error
    assert got["noisy"].status == "done" and got["noisy"].result["objective"] == 1.0
    for i in range(4):
        outcome = got[f"ok{i}"]
        assert outcome.status == "done"
        assert outcome.result["objective"] == (i - 3) ** 2 + 1 and outcome.result["seed"] == 7


def test_results_arrive_as_they_finish_not_in_submit_order():
    with LocalEngine(evaluator=fake_evaluate, space=None, fidelity="model", seed=0,
                     workers=2) as engine:
        engine.submit("slow", {"x": 1, "sleep": 5.0})
        engine.submit("fast", {"x": 2})
        first = []
        while not first:
            first = engine.poll(wait=0.2)
        assert [o.key for o in first] == ["fast"]
        assert engine.pending == 1
        rest = _drain(engine, 1)
        assert list(rest) == ["slow"]


def test_bad_worker_count_is_an_input_error():
    with pytest.raises(ValueError, match=r"^--workers must be at least 1, not 0$"):
        LocalEngine(evaluator=fake_evaluate, space=None, fidelity="model", seed=0, workers=0)


def test_a_worker_that_cannot_load_the_evaluator_fails_its_jobs_in_one_line(monkeypatch):
    import sys
    import types

    ghost = types.ModuleType("hwloop_ghost_module")  # exists here, not in the worker

    def evaluate(space, point, *, fidelity, seed):
        return {}

    evaluate.__module__ = ghost.__name__
    evaluate.__qualname__ = "evaluate"  # so that cloudpickle pickles it by reference
    ghost.evaluate = evaluate
    monkeypatch.setitem(sys.modules, ghost.__name__, ghost)
    with LocalEngine(evaluator=evaluate, space=None, fidelity="model", seed=0,
                     workers=1) as engine:
        engine.submit("a", {"x": 1})
        engine.submit("b", {"x": 2})
        got = _drain(engine, 2)
    assert set(got) == {"a", "b"}
    for outcome in got.values():
        assert outcome.status == "failed"
        assert outcome.error.startswith("worker process could not start: Traceback")
        assert "No module named 'hwloop_ghost_module'" in outcome.error


def test_a_dask_task_of_another_space_gets_a_fresh_worker_even_at_the_same_address():
    space = load_space(TINY)
    evaluate = engine_module._dask_evaluate
    try:
        first = evaluate(space_evaluate, space, "a", {"x": 1}, "model", 0, None)
        space.budgets["area"] = 1.0  # another space where the first was (id() is the same)
        second = evaluate(space_evaluate, space, "b", {"x": 1}, "model", 0, None)
    finally:
        cached = engine_module._DASK_LOCAL.pop(threading.get_ident(), None)
        if cached is not None:
            cached[1].close()
    assert first["status"] == "done" and first["result"]["budgets"]["area"] == 1.0e9
    assert second["status"] == "done" and second["result"]["budgets"]["area"] == 1.0


def test_a_worker_whose_driver_is_gone_ends_without_a_traceback(tmp_path):
    # kill -9 of the driver closes its end of the reply pipe: the worker finishing an
    # evaluation then printed a BrokenPipeError traceback on the terminal it shares with it
    engine = LocalEngine(evaluator=fake_evaluate, space=None, fidelity="model", seed=0,
                         workers=1, log_dir=tmp_path)
    worker = engine._spawn()
    try:
        worker.stdout.close()
        worker.send(engine_module._Job("a", {"x": 1, "sleep": 0.2}), "model", 0)
        worker.proc.wait(timeout=60)
    finally:
        worker.kill()
    assert (tmp_path / "worker-1.log").read_text() == ""
