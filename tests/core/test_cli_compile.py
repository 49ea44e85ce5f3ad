"""``hwloop compile systolic``: program and memory images of a GEMM for the generated IP."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.bounds import cycle_bounds
from hwloop.sim.systolic.golden import random_operands, stored_golden
from hwloop.sim.systolic.harness import layout_a, layout_b, pack_rows, unlayout_c, unpack_rows
from hwloop.sim.systolic.mapping import Gemm, Mapping, padded_dims
from hwloop.sim.systolic.model import model_gemm
from tests.core.cli_helpers import run_main

SEED = int(os.environ.get("HWLOOP_SEED", "2468"))

#: The designs of the RTL tests (tests/sim/test_systolic_rtl.py, test_systolic_requant.py):
#: built there already in a test run
OS = SystolicParams(rows=2, cols=3, dataflow="os", in_bits=8, acc_bits=32, ifmap_kib=4,
                    weight_kib=4, acc_kib=4, mem_latency=3)
WS5 = SystolicParams(rows=3, cols=2, dataflow="ws", in_bits=4, acc_bits=10, ifmap_kib=4,
                     weight_kib=4, acc_kib=4, bus_bytes=2, mem_latency=5, out_bits=5)


def _flags(params: SystolicParams) -> list[str]:
    flags = []
    for name, value in params.to_dict().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags += [flag] if value else []
        elif value is not None:
            flags += [flag, str(value)]
    return flags


def _c_of(folder: Path, params: SystolicParams, gemm: Gemm) -> np.ndarray:
    """The C matrix that ``c.hex`` holds, decoded as the co-simulation decodes its dump."""
    description = json.loads((folder / "program.json").read_text())
    c = description["memories"]["c"]
    rows = unpack_rows(folder / "c.hex", c["rows"], c["fields"], c["field_bits"])
    return unlayout_c(params, rows, gemm.m, gemm.n, padded_dims(params, gemm))


@pytest.mark.parametrize("params", [OS, WS5], ids=["os", "ws-o5"])
def test_the_images_are_the_layouts_and_c_is_what_the_design_writes(tmp_path, capsys, params):
    gemm = Gemm(m=7, n=5, k=9)
    a, b = random_operands(gemm, in_bits=params.in_bits, rng=np.random.default_rng(SEED))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "out"
    code, stdout, err = run_main(capsys, ["compile", "systolic", *_flags(params), "--a",
                                          str(tmp_path / "a.npy"), "--b",
                                          str(tmp_path / "b.npy"), "-o", str(out)])
    assert (code, err) == (0, ""), err
    assert sorted(p.name for p in out.iterdir()) == ["a.hex", "b.hex", "c.hex", "program.hex",
                                                      "program.json"]
    description = json.loads((out / "program.json").read_text())
    mapping = Mapping.from_dict(description["mapping"])
    model = model_gemm(params, gemm, mapping)
    shift = description["out_shift"]
    assert (shift is None) == (params.out_bits is None)  # as sim --json says it
    assert description["gemm"] == {"m": 7, "n": 5, "k": 9}
    assert description["model"] == {"cycles": model.cycles, "actions": model.actions,
                                    "bounds": cycle_bounds(params, model.actions)}
    assert description["n_instr"] == len((out / "program.hex").read_text().splitlines())
    padded = padded_dims(params, gemm)
    assert (out / "a.hex").read_text() == pack_rows(layout_a(params, a, padded), params.in_bits)
    assert (out / "b.hex").read_text() == pack_rows(layout_b(params, b, padded), params.in_bits)
    assert np.array_equal(_c_of(out, params, gemm), stored_golden(a, b, params, shift=shift))
    memories = description["memories"]
    assert memories["a"]["rows"] == len((out / "a.hex").read_text().splitlines())
    assert memories["c"]["rows"] == len((out / "c.hex").read_text().splitlines())
    assert f"{model.cycles:,} cycles" in stdout


def test_without_operands_the_program_alone(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_main(capsys, ["compile", "systolic", "--rows", "4", "--cols", "4",
                                     "--gemm", "64x64x64", "--mapping",
                                     "tile_m=32,tile_n=32,tile_k=64", "-o", str(out)])
    assert (code, err) == (0, "")
    assert sorted(p.name for p in out.iterdir()) == ["program.hex", "program.json"]
    description = json.loads((out / "program.json").read_text())
    assert description["mapping"] == {"tile_m": 32, "tile_n": 32, "tile_k": 64, "order": "mnk"}
    assert all(m["file"] is None for k, m in description["memories"].items() if k != "instr")
    # the program does not depend on the data: random operands give the same words
    again = tmp_path / "again"
    run_main(capsys, ["compile", "systolic", "--rows", "4", "--cols", "4", "--gemm",
                      "64x64x64", "--mapping", "tile_m=32,tile_n=32,tile_k=64", "--seed", "1",
                      "-o", str(again)])
    assert (again / "program.hex").read_text() == (out / "program.hex").read_text()


def _pickled(path: Path) -> Path:
    np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["--gemm", "64x64"], "--gemm: expected MxNxK (three integers), not '64x64'"),
    (["--gemm", "4x0x4"], None),  # Gemm's own message
    ([], "--gemm is needed without operands (--a/--b)"),
    (["--a", "{tmp}/A.npy"], "--a and --b go together (A and B)"),
    (["--a", "{tmp}/A.npy", "--b", "{tmp}/B.npy", "--seed", "1"],
     "--seed draws random operands: give it or --a/--b, not both"),
    (["--a", "{tmp}/missing.npy", "--b", "{tmp}/B.npy"],
     "--a: cannot read '{tmp}/missing.npy': No such file or directory"),
    (["--a", "{tmp}/pickled.npy", "--b", "{tmp}/B.npy"],
     "--a: '{tmp}/pickled.npy' holds Python objects: only numeric arrays are read (never "
     "unpickled)"),
    (["--a", "{tmp}/text.npy", "--b", "{tmp}/B.npy"], "--a: '{tmp}/text.npy' is not a .npy file"),
    (["--a", "{tmp}/ab.npz", "--b", "{tmp}/B.npy"],
     "--a: '{tmp}/ab.npz' is an .npz archive, not one .npy array"),
    (["--a", "{tmp}/cut.npy", "--b", "{tmp}/B.npy"], None),
    # a header that says 10^12 elements: was a MemoryError traceback
    (["--a", "{tmp}/liar.npy", "--b", "{tmp}/B.npy"], None),
    (["--a", "{tmp}/float.npy", "--b", "{tmp}/B.npy"],
     "--a: '{tmp}/float.npy' must hold a 2-D array of integers, not 2-D float64"),
    (["--a", "{tmp}/A.npy", "--b", "{tmp}/B.npy", "--gemm", "4x4x5"],
     "--a/--b: operands (4, 3) x (3, 2) do not match gemm m=4 n=4 k=5"),
    # before the mapping: it was 'mapping ... needs at least 477906008 instructions'
    (["--a", "{tmp}/A.npy", "--b", "{tmp}/B.npy", "--gemm", "100000x100000x100000"],
     "--a/--b: operands (4, 3) x (3, 2) do not match gemm m=100000 n=100000 k=100000"),
    # without --gemm: not 'operands: operands (4, 3) x (4, 3) do not match gemm m=4 n=3 k=3'
    (["--a", "{tmp}/A.npy", "--b", "{tmp}/A.npy"],
     "--a is 4 x 3 and --b 4 x 3: B must have as many rows as A has columns"),
    (["--a", "{tmp}/big.npy", "--b", "{tmp}/B.npy"],
     "--a/--b: A has values outside the signed 8-bit range -128..127"),
    (["--gemm", "8x8x8", "--mapping", "tile_m=3"], None),
    (["--gemm", "1024x1024x2", "--mapping", "tile_m=2,tile_n=2,tile_k=2"],
     "mapping {{'tile_m': 2, 'tile_n': 2, 'tile_k': 2, 'order': 'mnk'}} needs at least "
     "262146 instructions, more than 65536 (the most it writes, as many as the testbench's "
     "instruction memory holds): use larger tiles"),
    (["--gemm", "4x4x4", "--seed", "-1"], "--seed must be a non-negative integer, not -1"),
    # uint64 values past the int64 range are out of range too (they wrapped to in-range ones)
    (["--a", "{tmp}/u64.npy", "--b", "{tmp}/B.npy"],
     "--a/--b: A has values outside the signed 8-bit range -128..127"),
    # was an AssertionError traceback from the instruction encoder
    (["--rows", "1", "--cols", "1", "--acc-kib", "65536", "--gemm", "70000x70000x1",
      "--mapping", "tile_m=2800,tile_n=2800,tile_k=1"],
     "gemm m=70000 n=70000 k=1 needs 4900000000 rows of external C memory, more than the "
     "accelerator's 32-bit row addresses reach (4294967296)"),
    (["--gemm", "8192x2x8192", "--seed", "1", "--testbench"],
     "gemm m=8192 n=2 k=8192 needs 33554432 rows of external A memory, the testbench's holds "
     "4194304"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    np.save(tmp_path / "A.npy", np.ones((4, 3), np.int64))
    np.save(tmp_path / "B.npy", np.ones((3, 2), np.int8))
    np.save(tmp_path / "float.npy", np.ones((4, 3)))
    np.save(tmp_path / "big.npy", np.full((4, 3), 300))
    np.save(tmp_path / "u64.npy", np.full((4, 3), 2**64 - 1, np.uint64))
    (tmp_path / "text.npy").write_text("not an array\n")
    np.savez(tmp_path / "ab.npz", a=np.ones((4, 3), np.int64))
    with open(tmp_path / "liar.npy", "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": "<i8", "fortran_order": False, "shape": (10**6, 10**6)})
    (tmp_path / "cut.npy").write_bytes((tmp_path / "A.npy").read_bytes()[:100])
    _pickled(tmp_path / "pickled.npy")
    out = tmp_path / "out"
    code, stdout, err = run_main(capsys, ["compile", "systolic", "--rows", "2", "--cols", "2",
                                          *(a.format(tmp=tmp_path) for a in args),
                                          "-o", str(out)])
    assert code == 2 and stdout == ""
    assert len(err.splitlines()) == 1 and err.startswith("hwloop: error: "), err
    if message is not None:
        assert err == f"hwloop: error: {message.format(tmp=tmp_path)}\n"
    assert not out.exists()
    assert not any(p.name.startswith(".out.") for p in tmp_path.iterdir())


def test_pickle_is_never_loaded(tmp_path, capsys, monkeypatch):
    """An object .npy would run code through pickle: refused before anything is unpickled."""
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    np.save(tmp_path / "B.npy", np.ones((3, 2), np.int8))
    code, _, err = run_main(capsys, ["compile", "systolic", "--a",
                                     str(_pickled(tmp_path / "p.npy")), "--b",
                                     str(tmp_path / "B.npy"), "-o", str(tmp_path / "out")])
    assert code == 2 and "holds Python objects" in err


@pytest.mark.rtl
@pytest.mark.parametrize("params", [
    pytest.param(OS, id="os", marks=pytest.mark.xdist_group("systolic_os_2x3")),
    pytest.param(WS5, id="ws-o5", marks=pytest.mark.xdist_group("systolic_ws_3x2_o5")),
])
def test_the_files_are_what_the_co_simulation_runs_bit_exact(tmp_path, capsys, params):
    """The exported images, byte for byte, are the job files of an RTL run of the same GEMM,
    whose C (bit-exact against the golden model) is the exported c.hex."""
    from hwloop.sim.systolic.rtl import RtlSimulator

    gemm = Gemm(m=10, n=7, k=11)
    out = tmp_path / "out"
    code, _, err = run_main(capsys, ["compile", "systolic", *_flags(params), "--gemm",
                                     "10x7x11", "--seed", str(SEED), "-o", str(out)])
    assert (code, err) == (0, "")
    print(f"HWLOOP_SEED={SEED} design={params.name}")
    description = json.loads((out / "program.json").read_text())
    a, b = random_operands(gemm, in_bits=params.in_bits, rng=np.random.default_rng(SEED))
    work = tmp_path / "sim"
    run = RtlSimulator(params, workdir=work).run(
        [(gemm, Mapping.from_dict(description["mapping"]), a, b)],
        out_shifts=[description["out_shift"]] if params.out_bits else None)[0]
    for name in ("instr", "a", "b"):
        exported = "program.hex" if name == "instr" else f"{name}.hex"
        assert (work / f"job0_{name}.hex").read_text() == (out / exported).read_text(), name
    assert np.array_equal(run.c, _c_of(out, params, gemm)), SEED
    assert run.cycles == description["model"]["cycles"]


@pytest.mark.rtl
@pytest.mark.parametrize("params", [OS, WS5], ids=["os", "ws-o5"])
def test_the_standalone_testbench_runs_the_ip_without_hwloop(tmp_path, capsys, params):
    """--testbench: the design, its memory model and a self-running top, built with plain
    Verilator (--binary --timing, the command program.json gives): it writes the C of c.hex and
    counts the model's cycles."""
    import subprocess

    from hwloop.toolchain import verilator_env

    out = tmp_path / "out"
    code, _, err = run_main(capsys, ["compile", "systolic", *_flags(params), "--gemm",
                                     "10x7x11", "--seed", str(SEED), "--testbench",
                                     "-o", str(out)])
    assert (code, err) == (0, "")
    print(f"HWLOOP_SEED={SEED} design={params.name}")
    bench = json.loads((out / "program.json").read_text())["testbench"]
    build, run = bench["verilator"].split(" && ")
    env = verilator_env()
    subprocess.run(build.split(), cwd=out, env=env, check=True,
                   capture_output=True)
    done = subprocess.run([str(out / run)], cwd=out, env=env, check=True, capture_output=True,
                          text=True)
    cycles = json.loads((out / "program.json").read_text())["model"]["cycles"]
    assert f"hwloop tb: done, cycles {cycles} " in done.stdout
    assert (out / "c_out.hex").read_text() == (out / "c.hex").read_text()


def test_the_testbench_writes_c_itself_in_the_text_of_c_hex(tmp_path, capsys):
    """tb.v's top writes C with one ``%h`` line per row (zero-padded, lower case: c.hex's text
    in any simulator), not with the harness's ``$writememh``, whose text is the simulator's:
    under Icarus Verilog it adds ``// 0x00000000`` address lines, so ``diff c.hex c_out.hex``
    failed on the same C (found running tb.v in Icarus 11). program.json gives the Icarus
    command too."""
    out = tmp_path / "out"
    code, _, err = run_main(capsys, ["compile", "systolic", *_flags(OS), "--gemm", "5x4x3",
                                     "--seed", "1", "--testbench", "-o", str(out)])
    assert (code, err) == (0, "")
    top = (out / "tb.v").read_text().split("module hwloop_systolic_tb;")[1]
    assert "$writememh" not in top and "harness.dump" not in top
    rows = json.loads((out / "program.json").read_text())["memories"]["c"]["rows"]
    assert f"for (row = 0; row < {rows}; row = row + 1)" in top
    assert '$fwrite(fd, "%h\\n", harness.cmem[row]);' in top
    bench = json.loads((out / "program.json").read_text())["testbench"]
    assert bench["iverilog"] == ("iverilog -g2005 -s hwloop_systolic_tb -o tb.vvp "
                                 f"{OS.name}.v tb.v && vvp -n tb.vvp")


def test_the_testbench_memory_answers_no_request_made_before_reset(tmp_path, capsys):
    """tb.v's read pipelines are cleared while rst_q is high: in a netlist without initial
    values (X until the first reset edge) the X requests of the first cycle were answered 21
    cycles later and done never came (found in Icarus with the design's `= init` removed).
    The co-simulation's harness is left as it was."""
    from hwloop.sim.systolic.harness import harness_verilog

    out = tmp_path / "out"
    code, _, err = run_main(capsys, ["compile", "systolic", *_flags(OS), "--gemm", "5x4x3",
                                     "--seed", "1", "--testbench", "-o", str(out)])
    assert (code, err) == (0, "")
    lat = OS.mem_latency
    harness = (out / "tb.v").read_text()
    for ch in "ab":
        assert f"{ch}_v <= rst_q ? {lat + 1}'d0 : {{{ch}_v[{lat - 1}:0], {ch}_req_valid}};" \
            in harness
        assert f"{ch}_v <= {{{ch}_v[{lat - 1}:0], {ch}_req_valid}};" in harness_verilog(OS)


@pytest.mark.rtl
@pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                    reason="Icarus Verilog (iverilog, vvp) is not installed")
@pytest.mark.parametrize("params", [OS, WS5, SystolicParams()],
                         ids=["os", "ws-o5", "default"])
def test_the_standalone_testbench_runs_in_icarus(tmp_path, capsys, params):
    """The command program.json gives for Icarus Verilog writes the C of c.hex, byte for byte,
    and counts the model's cycles (skipped where Icarus is not installed); so it does with the
    design's initial values removed (the default 8x8 hung there while tb.v's memory answered
    the X requests made before the reset)."""
    import subprocess

    out = tmp_path / "out"
    code, _, err = run_main(capsys, ["compile", "systolic", *_flags(params), "--gemm",
                                     "37x21x45", "--seed", str(SEED), "--testbench",
                                     "-o", str(out)])
    assert (code, err) == (0, "")
    print(f"HWLOOP_SEED={SEED} design={params.name}")
    description = json.loads((out / "program.json").read_text())
    build, run = description["testbench"]["iverilog"].split(" && ")
    subprocess.run(build.split(), cwd=out, check=True, capture_output=True)
    done = subprocess.run(run.split(), cwd=out, check=True, capture_output=True, text=True)
    assert f"hwloop tb: done, cycles {description['model']['cycles']} " in done.stdout
    assert (out / "c_out.hex").read_text() == (out / "c.hex").read_text()
    # without its registers' initial values (X until rst, as a flow that drops them has it),
    # the design still runs the GEMM bit-exact with the model's cycles
    design = out / f"{params.name}.v"
    text, n = re.subn(r"^(\s*reg (?:signed )?(?:\[\d+:\d+\] )?(?!\\\$auto)\S+ ?) = [^;]+;",
                      r"\1;", design.read_text(), flags=re.M)
    assert n > 50 and not re.search(r"^\s*reg [^=\n]*= (?!0;)", text, re.M)
    design.write_text(text)
    (out / "c_out.hex").unlink()
    subprocess.run(build.split(), cwd=out, check=True, capture_output=True)
    done = subprocess.run(run.split(), cwd=out, check=True, capture_output=True, text=True)
    assert f"hwloop tb: done, cycles {description['model']['cycles']} " in done.stdout
    assert (out / "c_out.hex").read_text() == (out / "c.hex").read_text()


def test_the_testbench_needs_operands(tmp_path, capsys):
    code, _, err = run_main(capsys, ["compile", "systolic", "--gemm", "8x8x8", "--testbench",
                                     "-o", str(tmp_path / "out")])
    assert (code, err) == (2, "hwloop: error: --testbench needs operands (--a/--b or --seed)\n")


#: A GEMM whose operands take 160 GB (as int64), in 16,046 instructions
BIG = ["compile", "systolic", "--rows", "64", "--cols", "64", "--ifmap-kib", "65536",
       "--weight-kib", "65536", "--acc-kib", "65536", "--gemm", "100000x100000x100000",
       "--mapping", "tile_m=2560,tile_n=2560,tile_k=10000"]


def test_the_program_alone_never_holds_operands(tmp_path, capsys):
    """Without operands nothing the size of A or B is made: a GEMM whose operands would take
    160 GB gives its program (it was a MemoryError traceback, after zero operands were made)."""
    out = tmp_path / "out"
    code, stdout, err = run_main(capsys, [*BIG, "-o", str(out)])
    assert (code, err) == (0, ""), err
    assert sorted(p.name for p in out.iterdir()) == ["program.hex", "program.json"]


def test_operands_that_do_not_fit_in_memory_are_one_line(tmp_path, capsys, monkeypatch):
    import hwloop.sim.systolic.golden as golden

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000)")

    monkeypatch.setattr(golden, "random_operands", no_memory)
    out = tmp_path / "out"
    code, stdout, err = run_main(capsys, [*BIG, "--seed", "1", "-o", str(out)])
    assert (code, stdout) == (2, "")
    assert err == ("hwloop: error: gemm m=100000 n=100000 k=100000: its operands and memory "
                   "images do not fit in this machine's memory\n")
    assert not out.exists()


@pytest.mark.parametrize("params", [
    SystolicParams(rows=2, cols=3, in_bits=4, acc_bits=8, bus_bytes=4),  # 1-byte element slots
    SystolicParams(rows=3, cols=2, dataflow="ws", in_bits=12, acc_bits=40, out_bits=20,
                   bus_bytes=16),
], ids=["i4", "i12"])
def test_program_json_gives_the_port_widths(tmp_path, capsys, params):
    """An integrator drives the ports from program.json: a read beat is ``beat_rows`` rows, as
    wide as the design's resp_data port. (It said 'as many rows as fit in bus_bytes': an A row
    of two 4-bit inputs is one byte, yet a 4-byte bus carries 2 rows, not 4: each input takes
    a byte of the bus.)"""
    from hwloop.hdl.systolic import ports

    out = tmp_path / "out"
    code, _, err = run_main(capsys, ["compile", "systolic", *_flags(params), "--gemm", "5x5x5",
                                     "-o", str(out)])
    assert (code, err) == (0, ""), err
    description = json.loads((out / "program.json").read_text())
    memories = description["memories"]
    pm, pn, pk = padded_dims(params, Gemm(m=5, n=5, k=5))
    assert description["padded"] == {"m": pm, "n": pn, "k": pk}
    assert memories["b"]["rows"] == pn // params.cols * pk  # Kp of the B layout
    widths = {port["name"]: port["width"] for port in ports(params)}
    assert memories["instr"]["row_bits"] == widths["instr_data"]
    for name in ("a", "b"):
        memory = memories[name]
        assert memory["row_bits"] == memory["fields"] * memory["field_bits"]
        assert memory["beat_rows"] * memory["row_bits"] == widths[f"{name}_resp_data"], name
    assert memories["c"]["row_bits"] == widths["c_wr_data"]


def test_operands_are_read_from_pipes(tmp_path, capsys):
    """--a <(...) died with 'EOFError: No data left in file': the magic bytes were read from
    one open of the pipe, then np.load opened it again and found it drained."""
    import threading

    rng = np.random.default_rng(SEED)
    a = rng.integers(-128, 128, (5, 4))
    b = rng.integers(-128, 128, (4, 3))
    files = tmp_path / "files"
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    code, _, err = run_main(capsys, ["compile", "systolic", "--rows", "2", "--cols", "2", "--a",
                                     str(tmp_path / "a.npy"), "--b", str(tmp_path / "b.npy"),
                                     "-o", str(files)])
    assert (code, err) == (0, "")
    pipes = []
    for name in ("a", "b"):
        read, write = os.pipe()
        data = (tmp_path / f"{name}.npy").read_bytes()
        threading.Thread(target=lambda fd=write, d=data: (os.write(fd, d), os.close(fd)),
                         daemon=True).start()
        pipes.append(read)
    piped = tmp_path / "piped"
    try:
        code, _, err = run_main(capsys, ["compile", "systolic", "--rows", "2", "--cols", "2",
                                         "--a", f"/dev/fd/{pipes[0]}", "--b",
                                         f"/dev/fd/{pipes[1]}", "-o", str(piped)])
    finally:
        for fd in pipes:
            os.close(fd)
    assert (code, err) == (0, "")
    for name in ("a.hex", "b.hex", "c.hex", "program.hex"):
        assert (piped / name).read_text() == (files / name).read_text()


def test_an_earlier_output_is_replaced_but_not_with_a_file_of_the_users(tmp_path, capsys):
    """Running again into the same folder replaces it as a whole (with the testbench's obj_dir,
    tb.vvp and c_out.hex); a file the user added there would be deleted with it, so that is
    refused."""
    out = tmp_path / "out"
    argv = ["compile", "systolic", "--rows", "2", "--cols", "2", "--gemm", "4x4x4", "--seed",
            "1", "--testbench", "-o", str(out)]
    assert run_main(capsys, argv)[0] == 0
    (out / "obj_dir").mkdir()
    (out / "c_out.hex").write_text("0\n")
    (out / "tb.vvp").write_text("#! vvp\n")  # what the Icarus command makes
    assert run_main(capsys, argv)[:3:2] == (0, "")
    assert not (out / "obj_dir").exists() and not (out / "tb.vvp").exists()
    (out / "notes.txt").write_text("mine\n")
    code, _, err = run_main(capsys, argv)
    assert (code, err) == (2, f"hwloop: error: output folder {str(out)!r} exists and is not an "
                              "hwloop compile output (its files, and what running tb.v makes, "
                              "alone): it would be replaced as a whole\n")
    assert (out / "notes.txt").read_text() == "mine\n"
