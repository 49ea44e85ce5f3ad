"""Scratch folders: removed after use, kept for a failed run's log, reaped after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hwloop import paths
from hwloop.errors import InputError, ParameterError


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _age(folder, seconds: float = 3600.0) -> None:
    past = time.time() - seconds
    os.utime(folder / ".owner", (past, past))


def test_scratch_is_removed_after_its_block(tmp_root):
    with paths.scratch("unit") as folder:
        assert folder.parent == tmp_root and folder.name.startswith("hwloop-unit-")
        (folder / "data").write_text("x")
    assert not folder.exists()
    with paths.scratch("waves", keep=True) as kept:
        pass
    assert (kept / ".kept").exists()


def test_scratch_is_kept_on_error_only_when_asked(tmp_root):
    with pytest.raises(RuntimeError), paths.scratch("kept", keep_on_error=True) as kept:
        raise RuntimeError("boom")
    assert (kept / ".kept").exists()
    with pytest.raises(RuntimeError), paths.scratch("gone") as gone:
        raise RuntimeError("boom")
    assert not gone.exists()


def test_folders_of_killed_processes_are_reaped_and_live_ones_are_not(tmp_root):
    code = ("import sys, tempfile, time; tempfile.tempdir = sys.argv[1]\n"
            "from hwloop import paths\n"
            "print(paths.scratch_dir('killed'), flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_root)],
                             stdout=subprocess.PIPE, text=True)
    orphan = tmp_root / os.path.basename(child.stdout.readline().strip())
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    live = paths.scratch_dir("live")
    with pytest.raises(RuntimeError), paths.scratch("kept", keep_on_error=True) as kept:
        raise RuntimeError("boom")
    young = tmp_root / "hwloop-young-1"
    young.mkdir()
    (young / ".owner").touch()  # its owner may not have locked it yet
    unrelated = tmp_root / "hwloop-notes"
    unrelated.mkdir()
    for folder in (orphan, live, kept):
        _age(folder)
    paths._reap_orphans.__wrapped__()
    assert not orphan.exists()
    assert live.exists() and kept.exists() and young.exists() and unrelated.exists()
    paths.remove_scratch(live)
    assert not live.exists()


def test_byte_locks_of_one_file_are_independent_and_name_their_holder(tmp_path):
    lock_file = tmp_path / "runs.db.lock"
    code = ("import sys, time; from pathlib import Path; from hwloop import paths\n"
            "paths.try_lock_byte(Path(sys.argv[1]), 1); print('held', flush=True)\n"
            "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(lock_file)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert paths.try_lock_byte(lock_file, 1) is None
        assert paths.byte_lock_holder(lock_file, 1) == child.pid
        release = paths.try_lock_byte(lock_file, 2)  # another sweep of the same database
        assert release is not None and paths.try_lock_byte(lock_file, 2) is None
        assert paths.byte_lock_holder(lock_file, 2) == os.getpid()
        release()
        assert paths.byte_lock_holder(lock_file, 2) is None
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    release = paths.try_lock_byte(lock_file, 1)  # released by the holder's kill -9
    assert release is not None
    release()


def test_check_folder_path_refuses_a_file_at_or_above_the_path_and_names_it(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for path, message in ((afile, f"-o {afile}: exists and is a file, not a folder"),
                          (afile / "sub" / "deeper", f"-o {afile / 'sub' / 'deeper'}: "
                                                     f"{afile} is a file, not a folder")):
        with pytest.raises(ParameterError) as info:
            paths.check_folder_path(path, name=f"-o {path}", error=ParameterError)
        assert str(info.value) == message
    with pytest.raises(InputError) as info:
        paths.check_folder_path(afile / "x.db", name="db", parents_only=True)
    assert str(info.value) == f"db: {afile} is a file, not a folder"
    # a path that does not exist yet, an existing folder: nothing to refuse, nothing made
    paths.check_folder_path(tmp_path / "new" / "sub", name="-o new/sub")
    paths.check_folder_path(tmp_path, name="-o here")
    paths.check_folder_path(tmp_path / "new.db", name="db", parents_only=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    with pytest.raises(InputError, match=r"^null: exists and is not a folder$"):
        paths.check_folder_path(Path("/dev/null"), name="null")
