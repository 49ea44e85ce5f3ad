import pytest

from hwloop.errors import InputError
from hwloop.manifest import same_file, write_folder_atomically


def _fill(folder):
    (folder / "manifest.json").write_text("{}")


def test_a_file_above_the_output_folder_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compress.csv").write_text("pc,address\n")
    for out in ("compress.csv/sub", "compress.csv/sub/deeper"):
        with pytest.raises(InputError) as info:
            write_folder_atomically(tmp_path / out, _fill)
        assert str(info.value) == (f"output {str(tmp_path / out)!r}: "
                                   f"{tmp_path / 'compress.csv'} is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compress.csv"]


def test_what_counts_as_an_earlier_output_is_the_callers(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("mine")
    with pytest.raises(InputError) as info:
        write_folder_atomically(out, _fill, is_earlier_output=lambda f: False,
                                kind="an earlier report")
    assert str(info.value) == (f"output folder {str(out)!r} exists and is not an earlier "
                               f"report: it would be replaced as a whole")
    assert [p.name for p in out.iterdir()] == ["index.html"]
    write_folder_atomically(out, _fill, is_earlier_output=lambda f: True)
    assert [p.name for p in out.iterdir()] == ["manifest.json"]  # replaced as a whole


def test_same_file_sees_through_links_and_dots(tmp_path):
    a = tmp_path / "a"
    a.write_text("x")
    (tmp_path / "hard").hardlink_to(a)
    (tmp_path / "soft").symlink_to(a)
    assert same_file(a, tmp_path / "hard") and same_file(tmp_path / "soft", a)
    assert same_file(tmp_path / "sub" / ".." / "a", a)  # sub does not exist
    assert same_file(tmp_path / "new", tmp_path / "." / "new")
    assert not same_file(tmp_path / "new", a)


def test_a_staging_folder_left_by_a_killed_process_is_removed_by_the_next_write(tmp_path):
    """An output is built in a hidden `.NAME.tmp-*` sibling and renamed into place; a process
    killed mid-write (kill -9 of `hwloop report`) left that folder forever. The next write of
    the same output removes the ones whose lock nobody holds, once a minute old; a live
    writer's (its lock held: here by this process, through its own open file) stays."""
    import fcntl
    import os
    import time

    old = time.time() - 120
    dead, live, young = (tmp_path / f".out.tmp-{k}" for k in ("dead", "live", "young"))
    for folder in (dead, live, young):
        folder.mkdir()
        (folder / "half-written").write_text("x")
        (tmp_path / f"{folder.name}.lock").touch()
    for folder in (dead, live):
        os.utime(folder, (old, old))
    held = os.open(tmp_path / f"{live.name}.lock", os.O_WRONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        write_folder_atomically(tmp_path / "out", lambda f: (f / "a.txt").write_text("a"))
    finally:
        os.close(held)
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".out.tmp-live", ".out.tmp-live.lock", ".out.tmp-young",
                    ".out.tmp-young.lock", "out"]
