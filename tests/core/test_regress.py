import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hwloop import regress
from hwloop.cli import main

FAKE = '''
def sample_configs(rng, level):
    n = 3 if level == "quick" else 6
    return [{"x": int(rng.integers(0, 100)), "i": i} for i in range(n)]


def run_config(config, *, seed, waves, workdir):
    if config["i"] == 1:
        return {"passed": False, "detail": f"mismatch at i=1 (seed {seed})",
                "waves": str(workdir / "dump.fst") if waves else None}
    if config["i"] == 2 and config.get("crash", True):
        raise RuntimeError("simulator crashed")
    return {"passed": True, "detail": "ok", "cycles": 10 + config["i"], "model_cycles": 10}
'''

GOOD = '''
def sample_configs(rng, level):
    return [{"i": i} for i in range(2)]


def run_config(config, *, seed, waves, workdir):
    return {"passed": True, "detail": "ok", "cycles": 1, "model_cycles": 1,
            "waves": str(workdir / "dump.fst") if waves and config["i"] == 0 else None}
'''

# a generator that runs its simulator as the real ones do: in the work folder, with the path
# of its job file in the environment
SIM = '''
import os
import subprocess
import sys


def sample_configs(rng, level):
    return [{"i": 0}]


def run_config(config, *, seed, waves, workdir):
    (workdir / "job.json").write_text("{}")
    code = "import os; open(os.environ['JOB']).read()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True,
                          env={**os.environ, "JOB": str(workdir / "job.json")}, text=True)
    return {"passed": proc.returncode == 0, "detail": proc.stderr.strip()[-200:]}
'''


# a generator whose second configuration hangs in a child process (a simulator that never ends)
HANG = '''
import subprocess


def sample_configs(rng, level):
    return [{"i": i} for i in range(2)]


def run_config(config, *, seed, waves, workdir):
    if config["i"] == 1:
        proc = subprocess.run(["sleep", "60"])
        return {"passed": True, "detail": f"slept ({proc.returncode})"}
    return {"passed": True, "detail": "ok"}
'''


@pytest.fixture
def fake_generators(tmp_path, monkeypatch):
    (tmp_path / "fake_regress_mod.py").write_text(FAKE)
    (tmp_path / "good_regress_mod.py").write_text(GOOD)
    (tmp_path / "sim_regress_mod.py").write_text(SIM)
    (tmp_path / "hang_regress_mod.py").write_text(HANG)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(regress.REGISTRY, "fake", "fake_regress_mod")
    monkeypatch.setitem(regress.REGISTRY, "good", "good_regress_mod")
    monkeypatch.setitem(regress.REGISTRY, "sim", "sim_regress_mod")
    monkeypatch.setitem(regress.REGISTRY, "hang", "hang_regress_mod")
    monkeypatch.setitem(regress.REGISTRY, "missing", "no_such_regress_module_xyz")
    yield
    for name in ("fake_regress_mod", "good_regress_mod", "sim_regress_mod", "hang_regress_mod"):
        sys.modules.pop(name, None)


def test_failures_are_reported_with_seed_config_and_waves(fake_generators, tmp_path, capsys):
    code = main(["regress", "--quick", "--generator", "fake", "--seed", "7", "--jobs", "2",
                 "--waves", "--workdir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 passed, 2 failed" in out
    seed1 = regress.config_seed(7, 1)
    assert f"FAILED fake #1 seed {seed1}: mismatch at i=1 (seed {seed1})" in out
    assert "FAILED fake #2" in out and "RuntimeError: simulator crashed" in out
    assert "waves: " + str(tmp_path / "runs" / "fake-001" / "dump.fst") in out
    assert '"i": 1' in out  # the configuration is printed


def test_passing_runs_with_waves_say_where_they_are(fake_generators, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["regress", "--generator", "good", "--waves", "--workdir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"good #0 passed; waves: {runs / 'good-000' / 'dump.fst'}\n" in out
    assert f"good #1 passed; no waves in {runs / 'good-001'}\n" in out
    assert main(["regress", "--generator", "good", "--workdir", str(runs)]) == 0
    assert "passed;" not in capsys.readouterr().out  # without --waves: no paths to find


def test_a_relative_workdir_is_resolved_before_the_simulators_run(fake_generators, tmp_path,
                                                                   monkeypatch, capsys):
    """The simulators run in their work folders: a job path relative to the caller's folder
    would not be found there (every configuration failed with a relative --workdir)."""
    monkeypatch.chdir(tmp_path)
    code = main(["regress", "--generator", "sim", "--workdir", "runs"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1 passed, 0 failed" in out
    assert (tmp_path / "runs" / "sim-000" / "job.json").is_file()
    report = regress.run_regress(generators=["fake"], seed=7, jobs=1, workdir=Path("rel"))
    assert report.results[1].workdir == str(tmp_path / "rel" / "fake-001")


def test_a_workdir_that_is_a_file_is_bad_input(fake_generators, tmp_path, capsys):
    (tmp_path / "notes.csv").write_text("x\n")
    for workdir, message in [
            ("notes.csv", "--workdir {t}/notes.csv: exists and is a file, not a folder"),
            ("notes.csv/runs", "--workdir {t}/notes.csv/runs: {t}/notes.csv is a file, not a "
                               "folder")]:
        code = main(["regress", "--generator", "good", "--workdir", str(tmp_path / workdir)])
        out, err = capsys.readouterr()
        assert code == 2
        assert err == f"hwloop: error: {message.format(t=tmp_path)}\n"
        assert "passed" not in out  # refused before any configuration ran
    assert main(["regress", "--generator", "good", "--workdir", "/dev/null"]) == 2
    assert capsys.readouterr().err == ("hwloop: error: --workdir /dev/null: exists and is not "
                                       "a folder\n")


def test_a_workdir_that_cannot_be_made_is_bad_input(fake_generators, tmp_path, monkeypatch,
                                                    capsys):
    """A --workdir in a folder the user cannot write in (chmod 555) failed every configuration
    (the worker's mkdir), and the matrix exited 1 as if the generator were wrong."""
    import errno
    import os

    locked = tmp_path / "ro"
    locked.mkdir()
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):  # as chmod 555 does, even for root
        if os.path.dirname(os.path.abspath(path)) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    code = main(["regress", "--generator", "good", "--jobs", "1",
                 "--workdir", str(locked / "runs")])
    out, err = capsys.readouterr()
    assert (code, err) == (2, f"hwloop: error: --workdir {locked / 'runs'}: cannot create the "
                              f"folder: Permission denied\n")
    assert "passed" not in out


@pytest.mark.parametrize("waves", [False, True])
def test_without_workdir_only_failures_and_waves_keep_their_folders(
        fake_generators, tmp_path, monkeypatch, capsys, waves):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("HWLOOP_CACHE", str(tmp_path / "cache"))
    code = main(["regress", "--generator", "fake", "--seed", "7", "--jobs", "1",
                 *(["--waves"] if waves else [])])
    out = capsys.readouterr().out
    assert code == 1 and "1 passed, 2 failed" in out
    kept = sorted(p.name.rsplit("-", 1)[0] for p in scratch.iterdir())
    assert kept == (["hwloop-regress-fake-000"] if waves else []) + [
        "hwloop-regress-fake-001", "hwloop-regress-fake-002"]
    for index in (1, 2):  # a failure names its folder
        folder = next(scratch.glob(f"hwloop-regress-fake-{index:03d}-*"))
        assert f"  work folder: {folder}\n" in out
    assert not (tmp_path / "cache" / "regress").exists()


def test_matrix_is_reproducible_and_seeds_differ(fake_generators, tmp_path):
    a = regress.run_regress(generators=["fake"], seed=3, jobs=1, workdir=tmp_path / "a")
    b = regress.run_regress(generators=["fake"], seed=3, jobs=1, workdir=tmp_path / "b")
    assert [r.config for r in a.results] == [r.config for r in b.results]
    assert [r.seed for r in a.results] == [r.seed for r in b.results]
    assert len({r.seed for r in a.results}) == 3
    full = regress.run_regress(generators=["fake"], level="full", seed=3, jobs=1,
                               max_configs=4, workdir=tmp_path / "c")
    assert len(full.results) == 4


def test_one_config_reruns_with_its_seed(fake_generators, tmp_path, capsys):
    config = {"i": 2, "x": 5, "crash": False}
    code = main(["regress", "--generator", "fake", "--seed", "11", "--config",
                 json.dumps(config), "--workdir", str(tmp_path)])
    assert code == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out


def test_a_config_without_the_generators_keys_is_refused(fake_generators, tmp_path, capsys):
    code = main(["regress", "--generator", "fake", "--config", '{"i": 2, "rows": 4}',
                 "--workdir", str(tmp_path / "runs")])
    assert code == 2
    assert capsys.readouterr().err == (
        "hwloop: error: --config for fake: missing x; not its keys: rows (give a "
        "configuration as a failing run prints it)\n")
    assert not (tmp_path / "runs").exists()


def test_a_config_the_generator_cannot_run_is_bad_input(tmp_path, capsys):
    params = {"rows": 99, "cols": 2, "dataflow": "os", "in_bits": 8, "acc_bits": 32,
              "ifmap_kib": 4, "weight_kib": 4, "acc_kib": 4, "bus_bytes": 16,
              "mem_latency": 20}
    config = {"params": params, "gemm": {"m": 2, "n": 2, "k": 2}, "mapping": None}
    code = main(["regress", "--generator", "systolic", "--config", json.dumps(config),
                 "--workdir", str(tmp_path / "runs")])
    assert code == 2
    assert capsys.readouterr().err == (
        "hwloop: error: --config for systolic: rows must be an integer in 1..64, not 99\n")
    assert not (tmp_path / "runs").exists()


def test_max_configs_with_a_config_is_refused(fake_generators, tmp_path, capsys):
    """--max-configs has no effect with --config (one configuration runs): it was ignored, as
    sweep refuses options that would be (--workers with --scheduler)."""
    code = main(["regress", "--generator", "fake", "--config", '{"i": 2, "x": 5}',
                 "--max-configs", "3", "--workdir", str(tmp_path / "runs")])
    assert (code, capsys.readouterr().err) == (
        2, "hwloop: error: --max-configs has no effect with --config (it runs that one "
           "configuration)\n")
    assert not (tmp_path / "runs").exists()


def test_a_config_nested_too_deeply_is_bad_input(capsys):
    """json recursed into a RecursionError traceback."""
    code = main(["regress", "--generator", "cache", "--config", "[" * 5000 + "]" * 5000])
    assert (code, capsys.readouterr().err) == (
        2, "hwloop: error: --config is not valid JSON: nested too deeply\n")


_CACHE = {"sets": 64, "ways": 8, "line_bytes": 32, "addr_bits": 32, "policy": "lru",
          "seed": 5, "accesses": 100, "gaps": True}
_SYSTOLIC = {"params": {"rows": 2, "cols": 2}, "gemm": {"m": 2, "n": 2, "k": 2}, "mapping": None}


@pytest.mark.parametrize("generator, edit, message", [
    # a TypeError traceback
    ("systolic", {"params": []}, "params must be a JSON object, not []"),
    ("systolic", {"gemm": 3}, "gemm must be a JSON object, not 3"),
    # each ran, failed, and the matrix exited 1 as if the generator were wrong
    ("cache", {"sets": 3}, "sets must be a power of two, not 3"),
    ("cache", {"sets": "x"}, "sets must be a power of two, not 'x'"),
    ("cache", {"policy": "bogus"}, "unknown policy 'bogus' (have lru, plru, srrip, random, "
                                   "table, opt)"),
    ("cache", {"accesses": -5}, "accesses must be a positive integer, not -5"),
    ("cache", {"policy": "table", "table_geometry": {"entries": 3, "entry_bits": 8,
                                                     "history": 0}},
     "table_geometry: entries must be a power of two in 1..65536, not 3"),
    ("cache", {"policy": "table"}, "policy 'table' needs table_geometry {entries, entry_bits, "
                                   "history}"),
    ("prefetcher", {"prefetcher": {"kind": "bogus"}},
     "unknown prefetcher 'bogus' (have nextline, stride, table)"),
    ("prefetcher", {"prefetcher": {"kind": "nextline", "degree": 9}},
     "degree must be an integer in 1..4, not 9"),
    ("prefetcher", {"prefetcher": {"kind": "table"}},
     "prefetcher 'table' needs table_geometry {entries, entry_bits, history}"),
    ("prefetcher", {"prefetcher": "x"}, "prefetcher must be a JSON object, not 'x'"),
    ("prefetcher", {"prefetcher": {}}, "prefetcher needs a kind (nextline, stride, table)"),
])
def test_a_config_of_the_wrong_shape_or_values_is_bad_input(tmp_path, capsys, generator, edit,
                                                             message):
    config = {**(_SYSTOLIC if generator == "systolic" else _CACHE), **edit}
    if generator == "prefetcher":
        config.setdefault("prefetcher", {"kind": "nextline"})
    code = main(["regress", "--generator", generator, "--config", json.dumps(config),
                 "--workdir", str(tmp_path / "runs")])
    assert (code, capsys.readouterr().err) == (
        2, f"hwloop: error: --config for {generator}: {message}\n")
    assert not (tmp_path / "runs").exists()


def test_unimportable_generator_is_skipped_with_a_note(fake_generators, tmp_path, capsys):
    code = main(["regress", "--generator", "good", "--generator", "missing",
                 "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "skipped missing: no_such_regress_module_xyz does not import" in out
    assert "2 passed, 0 failed, 1 generators skipped" in out
    assert main(["regress", "--generator", "missing", "--workdir", str(tmp_path)]) == 1


def test_a_matrix_in_which_no_generator_could_run_fails(tmp_path, monkeypatch, capsys):
    """Without --generator every generator is asked for: none importing ran nothing, which is
    no pass (exit 0 once, so `hwloop regress --full` passed with a broken install)."""
    monkeypatch.setattr(regress, "REGISTRY", {"missing": "no_such_regress_module_xyz"})
    assert main(["regress", "--workdir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "0 passed, 0 failed, 1 generators skipped" in captured.out
    assert captured.err == "hwloop: error: no requested generator could run\n"


def test_bad_arguments_exit_2(fake_generators, capsys):
    with pytest.raises(SystemExit) as info:
        main(["regress", "--generator", "nonesuch"])
    assert info.value.code == 2
    assert main(["regress", "--generator", "good", "--jobs", "0"]) == 2
    assert main(["regress", "--generator", "good", "--config", "{nope"]) == 2
    assert main(["regress", "--generator", "good", "--seed", "-3"]) == 2
    err = capsys.readouterr().err
    assert "hwloop: error: jobs must be a positive integer, not 0" in err
    assert "hwloop: error: seed must be a non-negative integer, not -3" in err
    assert "hwloop: error: --config is not valid JSON" in err


SLOW = '''
import time


def sample_configs(rng, level):
    return [{"i": i} for i in range(8)]


def run_config(config, *, seed, waves, workdir):
    with open(workdir.parent / "started", "a") as log:
        log.write(f"{config['i']}\\n")
    time.sleep(0.3)
    return {"passed": True, "detail": "ok"}
'''


def test_ctrl_c_stops_the_matrix_instead_of_running_the_rest(fake_generators, tmp_path,
                                                             monkeypatch):
    """Ctrl-C (a KeyboardInterrupt in the main process) during a matrix: the configurations
    not started yet are not run (the pool once ran every one of them before `hwloop regress`
    said "interrupted")."""
    (tmp_path / "slow_regress_mod.py").write_text(SLOW)
    monkeypatch.setitem(regress.REGISTRY, "slow", "slow_regress_mod")
    monkeypatch.delitem(sys.modules, "slow_regress_mod", raising=False)

    def interrupt(result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        regress.run_regress(generators=["slow"], jobs=1, workdir=tmp_path / "runs",
                            progress=interrupt)
    # the one that finished and at most the three handed to the worker by then (the pool
    # queues max_workers + 1 calls ahead): not the other four
    assert len((tmp_path / "runs" / "started").read_text().split()) <= 4


@pytest.mark.rtl
@pytest.mark.xdist_group("regress_systolic")
def test_quick_systolic_matrix_passes(tmp_path):
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "hwloop", "regress", "--quick", "--generator", "systolic",
         "--max-configs", "3", "--jobs", "2", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 passed, 0 failed" in proc.stdout


@pytest.mark.rtl
@pytest.mark.xdist_group("regress_cache")
def test_cache_and_prefetcher_matrices_with_a_relative_workdir(tmp_path):
    """The cache player finds its job file by an absolute path (a relative --workdir made
    every configuration fail with "produced no result")."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "hwloop", "regress", "--quick", "--generator", "cache",
         "--generator", "prefetcher", "--max-configs", "1", "--jobs", "2",
         "--workdir", "runs"], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 passed, 0 failed" in proc.stdout
    assert (tmp_path / "runs" / "cache-000" / "sim" / "rtl.npz").is_file()


@pytest.mark.rtl
@pytest.mark.xdist_group("regress_cache")
def test_cache_matrix_writes_fst_waves_and_says_where(tmp_path):
    """FST as documented and as the systolic matrix writes (the cache player wrote VCD), and
    a passing run prints the path."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "hwloop", "regress", "--quick", "--generator", "cache",
         "--max-configs", "1", "--waves", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    fst = tmp_path / "cache-000" / "sim" / "dump.fst"
    assert f"cache #0 passed; waves: {fst}\n" in proc.stdout
    assert fst.read_bytes()[:1] == b"\0"  # an FST header block; a VCD starts with text


def test_a_configuration_past_the_timeout_fails_and_its_child_is_killed(fake_generators,
                                                                       capsys):
    # config #0 returns at once: 4 s leave it room on a loaded machine (1.5 s once failed it)
    code = main(["regress", "--generator", "hang", "--seed", "3", "--timeout", "4"])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 passed, 1 failed" in out
    seed1 = regress.config_seed(3, 1)
    assert f"FAILED hang #1 seed {seed1}: timed out after 4 s (--timeout)" in out
    sleepers = subprocess.run(["pgrep", "-f", "^sleep 60$"], capture_output=True, text=True)
    assert sleepers.stdout == ""


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_timeout_that_is_not_positive_is_bad_input(fake_generators, value, capsys):
    assert main(["regress", "--generator", "good", "--timeout", value]) == 2
    err = capsys.readouterr().err
    assert err == ("hwloop: error: timeout must be a positive number of seconds, not "
                   f"{float(value):g}\n")
