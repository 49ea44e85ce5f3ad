"""End-to-end capture of real programs under valgrind lackey (skipped without valgrind/gcc)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from hwloop.capture import capture, elf_start, parse_skip
from hwloop.cli import main
from hwloop.errors import ParameterError
from hwloop.traces import L1Filter, read_trace

pytestmark = [
    pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
]

TOUCH_C = r"""
#include <stdio.h>
#include <stdlib.h>
/* touch N OUT: store 0..N-1 into an int array, then sum it; write the array's address to OUT.
   touch N OUT spin: then keep touching memory forever. */
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    volatile int *a = malloc(sizeof(int) * n);
    FILE *out = fopen(argv[2], "w");
    fprintf(out, "%lx\n", (unsigned long)a);
    fclose(out);
    for (int i = 0; i < n; i++) a[i] = i;
    long sum = 0;
    for (int i = 0; i < n; i++) sum += a[i];
    while (argc > 3) for (int i = 0; i < n; i++) a[i] += (int)sum;
    return sum == (long)n * (n - 1) / 2 ? 0 : 3;
}
"""


@pytest.fixture(scope="module")
def touch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("touch")
    (folder / "touch.c").write_text(TOUCH_C)
    subprocess.run(["gcc", "-O1", "-o", str(folder / "touch"), str(folder / "touch.c")],
                   check=True)
    return folder / "touch"


def test_capture_sees_the_programs_stores_and_loads(touch: Path, tmp_path: Path) -> None:
    n = 3000
    out = tmp_path / "t.trace"
    stats = capture(str(touch), [str(n), str(tmp_path / "addr")], out)
    base = int((tmp_path / "addr").read_text(), 16)
    records = read_trace(out)
    assert stats.records == len(records) and stats.exit_status == 0
    start = elf_start(touch)
    assert start is not None and stats.start_pc == start.main
    assert stats.before_start > 10_000  # the dynamic loader's accesses were dropped
    in_array = records[(records["addr"] >= base) & (records["addr"] < base + 4 * n)]
    stores = in_array[in_array["write"] == 1]
    loads = in_array[in_array["write"] == 0]
    assert stores["addr"].tolist() == [base + 4 * i for i in range(n)]
    assert loads["addr"].tolist() == [base + 4 * i for i in range(n)]
    assert len(set(stores["pc"].tolist())) == 1 and len(set(loads["pc"].tolist())) == 1
    assert stores["pc"][0] != loads["pc"][0]
    assert np.flatnonzero(in_array["write"] == 0)[0] == n  # all stores come before the loads


def test_skip_counts_and_zero(touch: Path, tmp_path: Path) -> None:
    args = ["100", str(tmp_path / "addr")]
    whole = capture(str(touch), args, tmp_path / "a.trace", skip="0")
    assert whole.before_start == 0 and whole.records == whole.data_accesses
    from_main = capture(str(touch), args, tmp_path / "b.trace", skip="main")
    later = capture(str(touch), args, tmp_path / "c.trace", skip="main+50")
    assert later.skipped == 50 and later.records == from_main.records - 50
    assert np.array_equal(read_trace(tmp_path / "c.trace"), read_trace(tmp_path / "b.trace")[50:])
    assert np.array_equal(read_trace(tmp_path / "b.trace"),
                          read_trace(tmp_path / "a.trace")[from_main.before_start:])


def test_max_stops_a_program_that_never_ends(touch: Path, tmp_path: Path) -> None:
    out = tmp_path / "spin.trace"
    stats = capture(str(touch), ["5000", str(tmp_path / "addr"), "spin"], out,
                    max_accesses=40_000)
    assert stats.stopped_early and stats.exit_status is None
    assert len(read_trace(out)) == 40_000


def _capture_peak(touch: Path, tmp_path: Path, n: int) -> tuple[int, object]:
    tracemalloc.start()
    try:
        stats = capture(str(touch), [str(n), str(tmp_path / "addr")], tmp_path / "l2.trace",
                        l1=L1Filter.from_spec("32K:8:64"), read_block=1 << 16,
                        filter_block=1 << 15)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"n={n}: peak traced memory {peak / 2**20:.1f} MiB for {stats.data_accesses} "
          f"accesses")
    return peak, stats


def test_l1_filtered_capture_in_bounded_memory(touch: Path, tmp_path: Path) -> None:
    """Four times the accesses, about the same peak memory (and far below the trace's size)."""
    _capture_peak(touch, tmp_path, 1000)  # one-time allocations (imports, the model library)
    small_peak, _ = _capture_peak(touch, tmp_path, 60_000)
    n = 240_000
    peak, stats = _capture_peak(touch, tmp_path, n)
    assert stats.data_accesses > 480_000  # type: ignore[attr-defined]
    assert peak < 1.5 * small_peak
    assert peak < 6 * 2**20 < stats.data_accesses * 17  # type: ignore[attr-defined]
    records = read_trace(tmp_path / "l2.trace")
    base = int((tmp_path / "addr").read_text(), 16)
    lines = records["addr"] >> np.uint64(6)
    # An L1 miss stream never repeats the line just accessed, and the sequential walks over
    # the array miss once per 64-byte line on each of the two passes.
    assert not np.any(lines[1:] == lines[:-1])
    in_array = (records["addr"] >= base) & (records["addr"] < base + 4 * n)
    assert abs(int(in_array.sum()) - 2 * 4 * n // 64) <= 4
    assert stats.l1_accesses == stats.data_accesses - stats.before_start  # type: ignore


def test_cli_program_not_found_writes_nothing(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.trace"
    code = main(["trace", "capture", "-o", str(out), "--", "no-such-program-hwloop", "-v"])
    assert code == 2
    assert capsys.readouterr().err == "hwloop: error: program not found: no-such-program-hwloop\n"
    assert not out.exists() and list(tmp_path.iterdir()) == []
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["trace", "capture", "-o", str(out), "--", str(text)]) == 2
    assert capsys.readouterr().err == f"hwloop: error: program is not executable: {text}\n"


def test_cli_truncated_elf_is_one_line_exit_2(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.trace"
    for size, head in ((4, b"\x7fELF"), (40, b"\x7fELF\x02\x01\x01")):
        program = tmp_path / f"tiny{size}"
        program.write_bytes(head.ljust(size, b"\0"))
        program.chmod(0o755)
        for skip in ("auto", "main"):
            assert main(["trace", "capture", "-o", str(out), "--skip", skip, str(program)]) == 2
            assert capsys.readouterr().err == (f"hwloop: error: {program}: truncated ELF file "
                                               f"({size} bytes, shorter than its header)\n")
    assert not out.exists()


def test_cli_output_of_the_wrong_kind(touch: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "folder"
    (folder / "sort.trace").mkdir(parents=True)
    afile = tmp_path / "afile"
    afile.write_text("keep")
    cases = [
        (["trace", "capture", "-o", str(folder), "--max", "100", "--", str(touch), "10",
          str(tmp_path / "addr")], f"{folder}: is a directory; name a trace file to write"),
        (["trace", "recipes", "sort", "-o", str(afile), "--max", "1000"],
         f"{afile}: exists and is a file, not a folder"),
        (["trace", "recipes", "sort", "-o", str(afile / "sub"), "--max", "1000"],
         f"{afile / 'sub'}: {afile} is a file, not a folder"),
        # checked before any recipe runs: matmul's trace is not written either
        (["trace", "recipes", "matmul", "sort", "-o", str(folder), "--max", "1000"],
         f"{folder / 'sort.trace'}: is a directory; name a trace file to write"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert capsys.readouterr().err == f"hwloop: error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder"]
    assert afile.read_text() == "keep"
    assert [p.name for p in folder.iterdir()] == ["sort.trace"]
    assert list((folder / "sort.trace").iterdir()) == []


def test_cli_output_that_is_the_program_itself_is_refused(touch: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """-o naming the program being traced (by its path, or by the name PATH finds) would
    replace the program with its own trace: refused before it runs, the program intact."""
    program = tmp_path / "touch"
    shutil.copy(touch, program)
    before = program.read_bytes()
    argv = ["trace", "capture", "-o", str(program), "--max", "100", "--", str(program), "10",
            str(tmp_path / "addr")]
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"hwloop: error: {program}: is the program being traced; "
                                       f"name another trace file to write\n")
    assert program.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["touch"]


def test_cli_capture_with_options(touch: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.trace"
    assert main(["trace", "capture", "-o", str(out), "--max", "500", "--json", "--",
                 str(touch), "1000", str(tmp_path / "addr")]) == 0
    assert '"records": 500' in capsys.readouterr().out
    assert len(read_trace(out)) == 500
    assert main(["trace", "capture", "-o", str(out), "--skip", "begin", "--", str(touch)]) == 2
    assert capsys.readouterr().err == ("hwloop: error: --skip must be auto, main, entry, N, "
                                       "main+N or entry+N, not 'begin'\n")
    assert main(["trace", "capture", "-o", str(out), "--max", "0", "--", str(touch)]) == 2
    assert "--max must be a positive number of accesses, not 0" in capsys.readouterr().err


def test_cli_show_output_with_json_keeps_stdout_json(tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    """The program's output goes to stderr: stdout is the JSON alone (it came first)."""
    (tmp_path / "hello.c").write_text(
        '#include <stdio.h>\nint main(void) { puts("499500"); fputs("note\\n", stderr); '
        'return 0; }\n')
    subprocess.run(["gcc", "-O1", "-o", str(tmp_path / "hello"), str(tmp_path / "hello.c")],
                   check=True)
    out_trace = str(tmp_path / "h.trace")
    assert main(["trace", "capture", "-o", out_trace, "--show-output", "--json", "--",
                 str(tmp_path / "hello")]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["output"] == out_trace
    assert "499500\n" in err and "note\n" in err
    assert main(["trace", "capture", "-o", out_trace, "--show-output", "--",
                 str(tmp_path / "hello")]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("499500\nwrote ") and "note\n" in err


def test_cli_recipes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "recipes", "--list"]) == 0
    assert "compress" in capsys.readouterr().out
    assert main(["trace", "recipes", "matmul", "--max", "3000", "-o", str(tmp_path)]) == 0
    records = read_trace(tmp_path / "matmul.trace")
    assert len(records) == 3000
    lines = records["addr"] >> np.uint64(6)
    assert not np.any(lines[1:] == lines[:-1])  # L1-filtered by default
    assert main(["trace", "recipes", "gzip", "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err.endswith(
        "unknown recipe 'gzip' (have compress, sort, matmul, hashtable)\n")
    assert os.listdir(tmp_path) == ["matmul.trace"]


def test_every_recipe_builds() -> None:
    from hwloop.recipes import RECIPES, build

    for recipe in RECIPES.values():
        program = build(recipe)
        start = elf_start(program)
        assert start is not None and start.main is not None, recipe.name


def test_skip_entry_keeps_libc_start_up(touch: Path, tmp_path: Path) -> None:
    args = ["100", str(tmp_path / "addr")]
    from_entry = capture(str(touch), args, tmp_path / "e.trace", skip="entry")
    from_main = capture(str(touch), args, tmp_path / "m.trace", skip="main")
    assert 0 < from_entry.before_start < from_main.before_start
    assert from_entry.records > from_main.records
    entry = read_trace(tmp_path / "e.trace")
    assert np.array_equal(entry[-from_main.records:], read_trace(tmp_path / "m.trace"))


def test_skip_spellings() -> None:
    assert [parse_skip(t) for t in ("auto", "main", "entry", "7", "main+3", "entry+0")] == \
        [("auto", 0), ("main", 0), ("entry", 0), (None, 7), ("main", 3), ("entry", 0)]
    for text in ("main+", "entry+x", "auto+3", "7+1", "start"):
        with pytest.raises(ParameterError) as info:
            parse_skip(text)
        assert str(info.value) == ("--skip must be auto, main, entry, N, main+N or entry+N, "
                                   f"not {text!r}")
