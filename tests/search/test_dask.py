"""The sweep on a real Dask cluster on loopback, with a worker killed mid-sweep."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from hwloop.search.db import ResultsDB
from hwloop.search.space import load_space
from hwloop.search.sweep import run_sweep
from tests.search.sweep_fakes import flaky_evaluate, slow_evaluate

distributed = pytest.importorskip("distributed")

TINY = Path(__file__).resolve().parents[2] / "constraints" / "tiny.toml"


@pytest.mark.xdist_group("dask")
def test_a_lost_worker_loses_no_evaluation_and_hung_ones_time_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_FAKE_SLEEP", "0.5")
    space = load_space(TINY)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0")
    try:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        with distributed.Client(address) as client:
            pids = client.run(os.getpid)
        summary: dict = {}

        def sweep() -> None:
            summary["result"] = run_sweep(
                space, method="random", budget=24, db_path=tmp_path / "runs.db",
                scheduler=address, timeout=3.0, evaluator=flaky_evaluate, seed=4)

        thread = threading.Thread(target=sweep)
        thread.start()
        db_path = tmp_path / "runs.db"
        deadline = time.time() + 60
        while time.time() < deadline:  # let a few results arrive, then kill a busy worker
            if db_path.exists():
                with ResultsDB.open_existing(db_path) as db:
                    if len(db.rows()) >= 4:
                        break
            time.sleep(0.2)
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        thread.join(timeout=240)
        assert not thread.is_alive()
    finally:
        cluster.close()
    result = summary["result"]
    assert result.told == 24 and result.evaluated == 24
    with ResultsDB.open_existing(tmp_path / "runs.db") as db:
        rows = db.rows()
    assert len(rows) == 24 and len({r.params_hash for r in rows}) == 24
    statuses = sorted(r.status for r in rows)
    assert statuses.count("timeout") == 4  # the hung 4x2 simulations, killed after 3 s
    assert statuses.count("failed") == 4  # the failed 4x8 builds
    assert statuses.count("ok") == 16  # nothing lost with the killed worker


@pytest.mark.xdist_group("dask")
def test_losing_every_worker_at_once_loses_no_evaluation(tmp_path, monkeypatch):
    # the space was scattered to the workers once: with all of them gone (restarted, their
    # batch jobs ended) it was lost for good, and the cluster cancelled every task of the
    # sweep, a FuturesCancelledError traceback though new workers had joined
    monkeypatch.setenv("HWLOOP_FAKE_SLEEP", "0.5")
    space = load_space(TINY)
    db_path = tmp_path / "runs.db"
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0")
    outcome: dict = {}
    try:
        with distributed.Client(cluster.scheduler_address) as client:
            pids = client.run(os.getpid)

        def sweep() -> None:
            try:
                outcome["result"] = run_sweep(
                    space, method="random", budget=12, db_path=db_path,
                    scheduler=cluster.scheduler_address, evaluator=slow_evaluate, seed=4)
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=sweep)
        thread.start()
        deadline = time.time() + 60
        while time.time() < deadline and thread.is_alive():
            if db_path.exists():
                with ResultsDB.open_existing(db_path) as db:
                    if len(db.rows()) >= 4:
                        break
            time.sleep(0.2)
        for pid in pids.values():  # the nanny starts new workers
            os.kill(pid, signal.SIGKILL)
        thread.join(timeout=240)
        assert not thread.is_alive()
    finally:
        cluster.close()
    assert "error" not in outcome, outcome["error"]
    assert outcome["result"].told == 12 and outcome["result"].evaluated == 12
    with ResultsDB.open_existing(db_path) as db:
        assert [r.status for r in db.rows()] == ["ok"] * 12


@pytest.mark.xdist_group("dask")
def test_hwloop_sweep_on_a_scheduler_address(tmp_path):
    import subprocess
    import sys

    root = TINY.parents[1]
    env = dict(os.environ, HWLOOP_SWEEP_EVALUATOR="tests.search.sweep_fakes:slow_evaluate",
               HWLOOP_FAKE_SLEEP="0.1", PYTHONPATH=str(root))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        proc = subprocess.run(
            [sys.executable, "-m", "hwloop", "sweep", "--space", str(TINY), "--budget", "6",
             "--db", str(tmp_path / "runs.db"), "--scheduler", cluster.scheduler_address,
             "--quiet"], capture_output=True, text=True, cwd=root, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "6/6 told (6 evaluated, 0 reused, 0 resumed)" in proc.stdout
    with ResultsDB.open_existing(tmp_path / "runs.db") as db:
        rows = db.rows()
    assert len(rows) == 6 and all(r.status == "ok" for r in rows)


@pytest.mark.xdist_group("dask")
def test_a_scheduler_without_workers_is_one_line_exit_2_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    root = TINY.parents[1]
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as cluster:
        address = cluster.scheduler_address
        proc = subprocess.run(
            [sys.executable, "-m", "hwloop", "sweep", "--space", str(TINY), "--budget", "2",
             "--db", str(tmp_path / "runs.db"), "--scheduler", address, "--quiet"],
            capture_output=True, text=True, cwd=root, timeout=180)
    assert proc.returncode == 2
    assert proc.stderr == (f"hwloop: error: --scheduler {address}: the cluster has no workers "
                           f"(start some: dask worker {address})\n")
    assert not (tmp_path / "runs.db").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.xdist_group("dask")
def test_a_lost_scheduler_stops_the_sweep_in_one_line_and_records_no_failure(tmp_path):
    # a scheduler killed mid-sweep was a FuturesCancelledError traceback; a future the client
    # cancelled for the lost connection is no evaluation that failed, and must not be stored
    import subprocess
    import sys

    root = TINY.parents[1]
    env = dict(os.environ, HWLOOP_SWEEP_EVALUATOR="tests.search.sweep_fakes:slow_evaluate",
               HWLOOP_FAKE_SLEEP="0.5",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    address = f"tcp://127.0.0.1:{_free_port()}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                  "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                  "--no-dashboard"], **quiet)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                               "--nworkers", "2", "--nthreads", "1", "--no-dashboard"], **quiet)
    db_path = tmp_path / "runs.db"
    args = [sys.executable, "-m", "hwloop", "sweep", "--space", str(TINY), "--budget", "24",
            "--db", str(db_path), "--quiet"]
    try:
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        sweep = subprocess.Popen([*args, "--scheduler", address], cwd=root, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and sweep.poll() is None:
            if db_path.exists():
                with ResultsDB.open_existing(db_path) as db:
                    if len(db.rows()) >= 4:
                        break
            time.sleep(0.2)
        scheduler.kill()
        _, err = sweep.communicate(timeout=120)
    finally:
        for proc in (scheduler, worker):
            proc.kill()
            proc.wait()
    assert sweep.returncode == 2, err
    assert err == (f"hwloop: error: --scheduler {address}: lost the connection to the "
                   f"scheduler; the results so far are kept: resume when it is back\n")
    with ResultsDB.open_existing(db_path) as db:
        rows = db.rows()
    assert 4 <= len(rows) < 24 and all(r.status == "ok" for r in rows)
    resumed = subprocess.run([*args, "--resume", "--workers", "2"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert f"24/24 told ({24 - len(rows)} evaluated, 0 reused, {len(rows)} resumed)" \
        in resumed.stdout
