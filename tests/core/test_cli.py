import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwloop.cli import main
from tests.core.cli_helpers import run_main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "hwloop" in capsys.readouterr().out


def test_unknown_command_is_a_one_line_error_with_exit_2():
    proc = subprocess.run([sys.executable, "-m", "hwloop", "frobnicate"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("hwloop: error:")


def test_doctor_lists_the_toolchain(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert "verilator" in out and "yosys" in out
    assert code in (0, 1)


def test_doctor_fails_only_on_required_tools(monkeypatch, capsys):
    from hwloop import toolchain
    from hwloop.toolchain import ToolStatus

    optional_missing = [ToolStatus("verilator", "5.48.0", True),
                        ToolStatus("lz4 (FST waves)", None, False, "apt-get install liblz4-dev",
                                   optional=True)]
    monkeypatch.setattr(toolchain, "doctor", lambda: optional_missing)
    assert main(["doctor"]) == 0
    assert "liblz4-dev" in capsys.readouterr().out
    required_missing = [*optional_missing, ToolStatus("yosys", None, False, "pip install x")]
    monkeypatch.setattr(toolchain, "doctor", lambda: required_missing)
    assert main(["doctor"]) == 1


def test_spinner_only_on_a_terminal(monkeypatch):
    """Long steps show a spinner on stderr only when it is a terminal: logs and pipes get
    nothing from it."""
    import contextlib
    import io

    from hwloop.cli import working

    monkeypatch.setattr("sys.stderr", io.StringIO())
    with working("building") as status:
        assert status is None
    assert isinstance(working("building"), contextlib.nullcontext)


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    """``hwloop best --db X | head -1``: the closed pipe ends the command quietly, exit 0."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "HWLOOP_FAKE_SLEEP": "0",
           "HWLOOP_SWEEP_EVALUATOR": "tests.search.sweep_fakes:slow_evaluate"}
    db = tmp_path / "runs.db"
    made = subprocess.run([sys.executable, "-m", "hwloop", "sweep", "--space",
                           str(root / "constraints" / "tiny.toml"), "--budget", "4", "--db",
                           str(db), "--quiet"], capture_output=True, text=True, env=env)
    assert made.returncode == 0, made.stderr
    proc = subprocess.Popen([sys.executable, "-m", "hwloop", "best", "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err.decode()) == (0, "")


def test_ctrl_c_while_the_commands_load_is_exit_130_without_a_traceback(monkeypatch, capsys):
    import hwloop.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(hwloop.cli, "build_parser", interrupted)
    try:
        code = main(["doctor"])
    except KeyboardInterrupt:  # not raised on: pytest would stop the whole session
        pytest.fail("KeyboardInterrupt escaped main()")
    assert code == 130
    assert capsys.readouterr().err == "hwloop: interrupted\n"


@pytest.fixture
def locked(tmp_path, monkeypatch):
    """``tmp_path/locked``, a folder that acts as if it were ``chmod 000`` (even for root, who
    passes permission checks): looking up a name in it or listing it fails with EACCES."""
    import errno
    import os

    folder = tmp_path / "locked"
    folder.mkdir()
    inside = str(folder) + os.sep

    def refuse_inside(call):
        def refused(path, *args, **kwargs):
            if isinstance(path, str | os.PathLike) and \
                    os.path.abspath(os.fspath(path)).startswith(inside):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return call(path, *args, **kwargs)
        return refused

    def refuse_listing(call):
        def refused(path=".", *args, **kwargs):
            if isinstance(path, str | os.PathLike) and \
                    os.path.abspath(os.fspath(path)) == str(folder):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return call(path, *args, **kwargs)
        return refused

    monkeypatch.setattr(os, "stat", refuse_inside(os.stat))
    monkeypatch.setattr(os, "lstat", refuse_inside(os.lstat))
    monkeypatch.setattr(os, "listdir", refuse_listing(os.listdir))
    monkeypatch.setattr(os, "scandir", refuse_listing(os.scandir))
    return folder


def test_paths_in_a_folder_that_cannot_be_searched_are_one_line_errors(locked, tmp_path,
                                                                       monkeypatch, capsys):
    """An output (or DB) path inside a folder without search permission (chmod 000) is a
    one-line error naming the path, exit 2, nothing written; it was a PermissionError
    traceback from the first exists()/is_dir() that looked at it."""
    from pathlib import Path

    from hwloop.traces import write_trace
    from tests.core.cli_helpers import run_main

    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parents[2]
    trace = tmp_path / "t.trace"
    write_trace(trace, np.zeros(3, dtype=[("pc", "<u8"), ("addr", "<u8"), ("write", "u1")]))
    csv = tmp_path / "t.csv"
    csv.write_text("0x1,0x2\n")
    space = str(root / "constraints" / "tiny.toml")
    cache = ["generate", "cache", "--sets", "4", "--ways", "2", "--line-bytes", "16"]
    cases = [
        ([*cache, "-o", "locked/c"], "locked/c"),
        ([*cache, "-o", "locked"], "locked"),
        (["trace", "export", str(trace), "--format", "csv", "-o", "locked/x.csv"],
         "locked/x.csv"),
        (["trace", "import", str(csv), "--format", "csv", "-o", "locked/x.trace"],
         "locked/x.trace"),
        (["sweep", "--space", space, "--budget", "1", "--db", "locked/x.db", "--quiet"],
         "locked/x.db"),
        (["sweep", "--space", space, "--budget", "1", "--db", "x.db", "--quiet",
          "--log-dir", "locked/logs"], "locked/logs"),
        (["best", "--db", "locked/x.db"], "locked/x.db"),
        (["report", "--db", "locked/x.db", "-o", "rep"], "locked/x.db"),
        (["db", "export", "--db", "locked/x.db", "-o", "x.csv"], "locked/x.db"),
        (["regress", "--workdir", "locked/w", "--generator", "cache"], "locked/w"),
        (["trace", "recipes", "sort", "-o", "locked/tr"], "locked/tr"),
    ]
    for argv, culprit in cases:
        code, _, err = run_main(capsys, argv)
        assert code == 2, (argv, err)
        assert err.startswith("hwloop: error: ") and err.count("\n") == 1, (argv, err)
        assert culprit in err and "Permission denied" in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked", "t.csv", "t.trace"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_full_disk_is_one_line_not_a_traceback(tmp_path):
    """stdout on a full disk (here /dev/full) died with an OSError traceback."""
    from hwloop.traces import write_trace

    trace = tmp_path / "t.trace"
    write_trace(trace, np.zeros(3, dtype=[("pc", "<u8"), ("addr", "<u8"), ("write", "u1")]))
    for argv in (["trace", "info", str(trace), "--json"],
                 ["trace", "export", str(trace), "--format", "csv", "-o", "-"]):
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "hwloop", *argv], stdout=full,
                                  stderr=subprocess.PIPE, text=True)
        assert (proc.returncode, proc.stderr) == (
            1, "hwloop: error: cannot write: No space left on device\n"), argv


def test_outputs_that_are_broken_symbolic_links_are_one_line_errors(tmp_path, monkeypatch,
                                                                     capsys):
    """-o naming a symbolic link to nothing (dangling, or a loop): generate made the link's
    missing target folder and died renaming onto the link (NotADirectoryError); a loop died
    in Path.resolve (RuntimeError: Symlink loop) in generate, trace import, report and db
    export, and trace info died on open (ELOOP)."""
    from hwloop.traces import write_trace
    from tests.core.cli_helpers import run_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dang").symlink_to(tmp_path / "gone" / "x")
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    trace = tmp_path / "t.trace"
    write_trace(trace, np.zeros(3, dtype=[("pc", "<u8"), ("addr", "<u8"), ("write", "u1")]))
    root = Path(__file__).resolve().parents[2]
    db = tmp_path / "runs.db"
    assert main(["sweep", "--space", str(root / "constraints" / "tiny.toml"), "--budget", "1",
                 "--workers", "1", "--db", str(db), "--quiet"]) == 0
    capsys.readouterr()
    cache = ["generate", "cache", "--sets", "4", "--ways", "2", "--line-bytes", "16", "-o"]
    for link, target in (("dang", tmp_path / "gone" / "x"), ("loop1", "loop2")):
        for argv, name in (
                ([*cache, link], f"output {link!r}"),
                (["trace", "import", str(trace), "--format", "csv", "-o", link], link),
                (["trace", "export", str(trace), "--format", "csv", "-o", link], link),
                (["report", "--db", str(db), "-o", link], f"-o {link}"),
                (["db", "export", "--db", str(db), "--format", "csv", "-o", link],
                 f"-o {link}")):
            code, _, err = run_main(capsys, argv)
            assert (code, err) == (2, f"hwloop: error: {name}: is a symbolic link to nothing "
                                      f"({target})\n"), argv
    code, _, err = run_main(capsys, ["trace", "info", "loop1"])
    assert (code, err) == (2, "hwloop: error: loop1: cannot read: Too many levels of symbolic "
                              "links\n")
    assert not (tmp_path / "gone").exists()
    assert (tmp_path / "dang").is_symlink() and (tmp_path / "loop1").is_symlink()


def _path_options(parser, words=()):
    """(subcommand words, option string or None for a positional, prog) of every path-typed
    argument of ``parser`` and its subcommands."""
    import argparse

    from hwloop.cli import path_arg, path_text

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _path_options(sub, (*words, name))
        elif action.type in (path_arg, path_text):
            yield words, (action.option_strings[0] if action.option_strings else None), \
                parser.prog


def test_every_path_argument_refuses_an_empty_path(capsys):
    """An empty path was Path("") == "." and errors named "." (or '' or nothing): "output
    folder '.' is the current folder", ".: cannot read space file: Is a directory"."""
    from hwloop.cli import build_parser

    found = list(_path_options(build_parser()))
    assert len(found) >= 20, found
    for words, option, prog in found:
        argv = [*words, *([option] if option else []), ""]
        code, _, err = run_main(capsys, argv)
        assert code == 2, argv
        assert err.startswith(f"{prog}: error: argument ") and err.endswith(
            ": an empty path\n") and err.count("\n") == 1, (argv, err)
