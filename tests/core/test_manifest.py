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


def _verilog_ports(verilog: str, top: str) -> list[tuple[str, str, int]]:
    """The ports the top module declares (name, direction, width), in its header's order."""
    import re

    body = verilog.split(f"module {top}(", 1)[1].split("endmodule", 1)[0]
    header = [name.strip().lstrip("\\") for name in body.split(");", 1)[0].split(",")]
    declared = {name: (kind, int(hi) - int(lo) + 1 if hi else 1) for kind, hi, lo, name in
                re.findall(r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s*)?\\?(\w+)\s*;",
                           body, re.M)}
    assert sorted(header) == sorted(declared), "header and declarations differ"
    return [(name, *declared[name]) for name in header]


@pytest.mark.parametrize("argv", [
    ["systolic", "--rows", "2", "--cols", "3", "--out-bits", "8", "--read-ahead"],
    ["systolic", "--rows", "1", "--cols", "2", "--dataflow", "ws", "--in-bits", "5"],
    ["cache", "--sets", "16", "--ways", "3", "--line-bytes", "32", "--addr-bits", "32",
     "--policy", "lru", "--prefetcher", "stride", "--entries", "16"],
    ["prefetcher", "--kind", "nextline", "--line-bits", "7", "--degree", "2"],
], ids=["systolic-os", "systolic-ws", "cache-stride", "prefetcher"])
def test_the_manifest_ports_are_the_verilog_tops(tmp_path, capsys, argv):
    """manifest.json's ports are the generated top module's: the same names, directions and
    widths (checked against the Verilog in an IP review with Yosys and by hand), listed clk,
    rst, then in the interface's order, which is not the order of the module's header."""
    import json

    from tests.core.cli_helpers import run_main

    out = tmp_path / "out"
    code, _, err = run_main(capsys, ["generate", *argv, "-o", str(out)])
    assert (code, err) == (0, "")
    manifest = json.loads((out / "manifest.json").read_text())
    verilog = (out / manifest["verilog"]).read_text()
    listed = [(p["name"], p["direction"], p["width"]) for p in manifest["ports"]]
    assert listed[:2] == [("clk", "input", 1), ("rst", "input", 1)]
    assert sorted(listed) == sorted(_verilog_ports(verilog, manifest["top"]))
