import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from hwloop.buildcache import BuildCache, build_key


def test_key_depends_on_sources_flags_and_tools():
    base = build_key(sources={"a.v": "module a; endmodule"}, flags=["-O3"], tools={"v": "5"})
    assert base == build_key(sources={"a.v": "module a; endmodule"}, flags=["-O3"],
                             tools={"v": "5"})
    assert base != build_key(sources={"a.v": "module b; endmodule"}, flags=["-O3"],
                             tools={"v": "5"})
    assert base != build_key(sources={"a.v": "module a; endmodule"}, flags=["-O2"],
                             tools={"v": "5"})
    assert base != build_key(sources={"a.v": "module a; endmodule"}, flags=["-O3"],
                             tools={"v": "6"})


def test_built_once_then_reused(tmp_path):
    cache = BuildCache(tmp_path)
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "out.txt").write_text("hello")

    path, built = cache.get_or_build("k1", build)
    assert built and (path / "out.txt").read_text() == "hello"
    path2, built2 = cache.get_or_build("k1", build)
    assert path2 == path and not built2
    assert len(calls) == 1


def test_failed_build_publishes_nothing(tmp_path):
    cache = BuildCache(tmp_path)

    def build(folder):
        (folder / "half.txt").write_text("x")
        raise RuntimeError("compiler died")

    with pytest.raises(RuntimeError):
        cache.get_or_build("k2", build)
    assert not cache.has("k2")
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_a_killed_builds_staging_folder_is_removed_by_the_next_build(tmp_path):
    cache = BuildCache(tmp_path)
    killed = tmp_path / ".staging-k3-4242-1466810b"  # as kill -9 mid-build leaves it
    killed.mkdir()
    (killed / "half.o").write_bytes(b"x" * 1024)
    other = tmp_path / ".staging-k30-4242-1466810b"  # another key: its builder may be alive
    other.mkdir()
    path, built = cache.get_or_build("k3", lambda folder: (folder / "out.txt").write_text("ok"))
    assert built and (path / "out.txt").read_text() == "ok"
    assert not killed.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging-k30-4242-1466810b", "k3"]


def _build_in_process(root, counter):
    cache = BuildCache(root)

    def build(folder):
        with open(counter, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        (folder / "out.txt").write_text("same")

    path, _ = cache.get_or_build("shared", build)
    assert (path / "out.txt").read_text() == "same"


def test_concurrent_processes_build_once(tmp_path):
    counter = tmp_path / "counter"
    procs = [multiprocessing.Process(target=_build_in_process, args=(tmp_path / "c", counter))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert len(counter.read_text().splitlines()) == 1


def test_key_lock_excludes_while_its_file_comes_and_goes(tmp_path):
    # each holder removes the lock file on release, so a waiter may be granted the lock of a
    # file that is gone while a newcomer locks a new one: the two must still exclude each other
    cache = BuildCache(tmp_path)
    inside, most = [0], [0]
    guard = threading.Lock()

    def worker():
        for _ in range(150):
            with cache._lock("k"):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.0002)
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    assert list(tmp_path.iterdir()) == []


def test_cache_root_that_is_a_file_is_named(tmp_path, monkeypatch):
    from hwloop.errors import InputError
    from hwloop.paths import cache_dir

    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("HWLOOP_CACHE", str(afile))
    with pytest.raises(InputError) as info:
        cache_dir()
    assert str(info.value) == (f"HWLOOP_CACHE={afile}: cannot use it as hwloop's cache (it is "
                               "not a folder); set HWLOOP_CACHE to a writable folder")


def test_cache_root_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    """An existing HWLOOP_CACHE the user may not write in (chmod 555): its mkdir passed, and
    the first cache file died with a PermissionError traceback (sim systolic), or failed
    every evaluation of a sweep."""
    import os

    from hwloop.errors import InputError
    from hwloop.paths import cache_dir

    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path) == str(folder)
                        else real_access(path, mode, **kw))  # as chmod 555 does, even for root
    monkeypatch.setenv("HWLOOP_CACHE", str(folder))
    with pytest.raises(InputError) as info:
        cache_dir()
    assert str(info.value) == (f"HWLOOP_CACHE={folder}: cannot use it as hwloop's cache "
                               "(Permission denied); set HWLOOP_CACHE to a writable folder")
    # a sweep refuses it before it makes its DB (which was left behind, empty)
    from hwloop.cli import main

    space = Path(__file__).resolve().parents[2] / "constraints" / "tiny.toml"
    db = tmp_path / "runs.db"
    assert main(["sweep", "--space", str(space), "--budget", "1", "--db", str(db),
                 "--quiet", "--workers", "1"]) == 2
    assert not db.exists()


@pytest.mark.parametrize("make", ["mkstemp", "mkdtemp"])
def test_an_output_folder_that_cannot_be_written_is_named(tmp_path, monkeypatch, make):
    import tempfile

    from hwloop import paths
    from hwloop.errors import InputError

    def refuse(**_):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, make, refuse)
    with pytest.raises(InputError) as info:
        getattr(paths, make)(dir=tmp_path, prefix=".out-")
    assert str(info.value) == f"cannot write in {str(tmp_path)!r}: Permission denied"


def test_a_cache_folder_that_cannot_be_written_is_named(tmp_path):
    """A build cache that cannot be written (a read-only file system: EROFS; here a file where
    its folder should be) is one line naming the folder, not an OSError traceback."""
    from hwloop.errors import InputError

    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(InputError) as info:
        BuildCache(afile / "builds")
    assert str(info.value) == (f"{afile / 'builds'}: cannot use it as hwloop's build cache "
                               "(Not a directory); set HWLOOP_CACHE to a writable folder")
    root = tmp_path / "builds"
    cache = BuildCache(root)
    root.rmdir()
    root.write_text("")  # gone from under a running process
    with pytest.raises(InputError) as info:
        cache.get_or_build("k", lambda folder: None)
    assert str(info.value) == (f"{root}: cannot use it as hwloop's build cache (Not a "
                               "directory); set HWLOOP_CACHE to a writable folder")
