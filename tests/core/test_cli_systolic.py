import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.core.cli_helpers import run_main

CONV_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
               "Num Filter, Strides,")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(("hwloop: error:", "hwloop generate systolic: error:",
                                "hwloop sim systolic: error:")), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_nothing_written(folder):
    assert not folder.exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}")]


@pytest.mark.parametrize(("args", "fragment"), [
    (["--rows", "0"], "rows must be an integer in 1..64, not 0"),
    (["--dataflow", "xy"], "dataflow must be one of os, ws, not 'xy'"),
    (["--in-bits", "1"], "in_bits must be an integer in 2..16, not 1"),
    (["--bus-bytes", "3"], "bus_bytes must be a power of two in 1..128, not 3"),
    (["--rows", "four"], "invalid integer 'four'"),
])
def test_generate_bad_parameters(tmp_path, capsys, args, fragment):
    out = tmp_path / "out"
    code, _, err = run_main(capsys, ["generate", "systolic", *args, "-o", str(out)])
    assert_one_line_error(code, err, fragment)
    assert_nothing_written(out)


def _csv(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text(CONV_HEADER + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(("case", "fragment"), [
    ("five_fields", "five.csv:3: expected 8 fields"),
    ("negative_stride", "neg.csv:4: Strides must be a positive integer, not -1"),
    ("unknown", "unknown workload 'resnet5' (known: "),
    ("bad_module", "cannot import module 'no_such_module_xyz'"),
    ("bad_attr", "module 'json' has no attribute 'NoSuchNet'"),
    ("too_small", "no mapping of gemm m=64 n=256 k=784 fits the scratchpads"),
    ("bad_layer", "has no layer 'nope'"),
    ("bad_mapping", "--mapping: expected key=value, not 'x'"),
    # the last tile_k silently won
    ("duplicate_mapping_key", "--mapping: tile_k given twice"),
    ("fidelity", "argument --fidelity: invalid choice: 'fast'"),
    ("seed", "seed must be a non-negative integer, not -1"),
])
def test_sim_bad_inputs(tmp_path, capsys, case, fragment):
    five = _csv(tmp_path, "five.csv", ["c1, 10, 10, 3, 3, 2, 4, 1,", "c2, 10, 10, 3, 3,"])
    neg = _csv(tmp_path, "neg.csv", ["c1, 10, 10, 3, 3, 2, 4, 1,", "c2, 10, 10, 3, 3, 2, 4, 1,",
                                     "c3, 10, 10, 3, 3, 2, 4, -1,"])
    argv = {
        "five_fields": ["--workload", str(five)],
        "negative_stride": ["--workload", str(neg)],
        "unknown": ["--workload", "resnet5"],
        "bad_module": ["--workload", "no_such_module_xyz:Net"],
        "bad_attr": ["--workload", "json:NoSuchNet"],
        "too_small": ["--workload", "mlp", "--rows", "64", "--cols", "64", "--ifmap-kib", "1",
                      "--weight-kib", "1", "--acc-kib", "1"],
        "bad_layer": ["--workload", "tiny", "--layer", "nope"],
        "bad_mapping": ["--workload", "tiny", "--mapping", "x"],
        "duplicate_mapping_key": ["--workload", "tiny", "--mapping",
                                  "tile_m=2,tile_n=2,tile_k=2,tile_k=4"],
        "fidelity": ["--workload", "tiny", "--fidelity", "fast"],
        "seed": ["--workload", "tiny", "--seed", "-1"],
    }[case]
    code, out, err = run_main(capsys, ["sim", "systolic", *argv, "--fidelity", "model",
                                       "--json"] if case != "fidelity" else
                              ["sim", "systolic", *argv])
    assert_one_line_error(code, err, fragment)
    assert out == ""


def test_sim_model_json_is_exactly_one_object(tmp_path):
    csv = tmp_path / "g.csv"
    csv.write_text(textwrap.dedent("""\
        Layer Name, M, N, K,
        first, 12, 10, 9,
        second, 7, 5, 13,
        """))
    proc = subprocess.run(
        [sys.executable, "-m", "hwloop", "sim", "systolic", "--rows", "4", "--cols", "4",
         "--ifmap-kib", "4", "--weight-kib", "4", "--acc-kib", "4", "--workload", str(csv),
         "--fidelity", "model", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # the whole stdout is one JSON document
    assert [x["name"] for x in data["layers"]] == ["first", "second"]
    for key in ("name", "cycles", "macs", "utilization", "bit_exact", "bounds", "limit"):
        assert key in data["layers"][0]
    first = data["layers"][0]
    # os on 4x4: 3 x 3 array tiles of the padded 12 x 12 output, each streaming k = 9
    assert first["bounds"]["compute"] == 3 * 3 * 9
    assert first["limit"] == max(first["bounds"], key=first["bounds"].get)
    total = data["total"]
    for key in ("cycles", "macs", "utilization", "area_cells", "sram_bits", "energy_pj", "edp"):
        assert key in total
    assert total["macs"] == 12 * 10 * 9 + 7 * 5 * 13
    assert total["cycles"] == sum(x["cycles"] for x in data["layers"])
    assert total["area_cells"] > 0 and total["sram_bits"] > 0


def test_sim_table_shows_each_layers_limit(tmp_path, capsys, monkeypatch):
    """The limit column: the resource with the largest lower bound and that bound's share of
    the layer's cycles, as the JSON of the same run gives them."""
    csv = tmp_path / "g.csv"
    csv.write_text("Layer Name, M, N, K,\ndeep, 8, 8, 300,\nshallow, 64, 16, 1,\n")
    monkeypatch.setenv("COLUMNS", "200")
    argv = ["sim", "systolic", "--rows", "4", "--cols", "4", "--ifmap-kib", "4",
            "--weight-kib", "4", "--acc-kib", "4", "--workload", str(csv), "--fidelity", "model"]
    code, out, err = run_main(capsys, [*argv, "--json"])
    assert code == 0, err
    layers = json.loads(out)["layers"]
    assert [layer["limit"] for layer in layers] == ["compute", "write"]
    code, out, err = run_main(capsys, argv)
    assert code == 0, err
    assert "limit" in out.splitlines()[2]
    for layer in layers:
        share = layer["bounds"][layer["limit"]] / layer["cycles"]
        line = next(line for line in out.splitlines() if line.startswith(f"│ {layer['name']} "))
        assert f"{layer['limit']} {share:.1%}" in line


def test_sim_json_stdout_holds_only_the_object_when_the_model_prints(tmp_path, capsys,
                                                                     monkeypatch):
    """A traced module's own prints (at import, in forward) went to stdout before the JSON:
    loading the workload ran outside the stdout-to-stderr redirection."""
    (tmp_path / "printing_mod.py").write_text(textwrap.dedent("""\
        from torch import nn

        print("importing printing_mod")


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 8)

            def forward(self, x):
                print("forward", tuple(x.shape))
                return self.fc(x)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "printing_mod", raising=False)
    code, out, err = run_main(capsys, [
        "sim", "systolic", "--rows", "4", "--cols", "4", "--ifmap-kib", "4", "--weight-kib", "4",
        "--acc-kib", "4", "--workload", "printing_mod:Net", "--fidelity", "model", "--json"])
    sys.modules.pop("printing_mod", None)
    assert code == 0, err
    assert json.loads(out)["layers"][0]["name"] == "fc"
    assert "importing printing_mod" in err and "forward (1, 8)" in err


def test_a_trace_warning_is_one_line_on_stderr(tmp_path, capsys, monkeypatch):
    """What the tracer skips is said as hwloop says its errors, once, and --json's stdout
    stays one object (Python's own format was two lines naming the model's source line)."""
    (tmp_path / "einsum_mod.py").write_text(textwrap.dedent("""\
        import torch
        from torch import nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 8)

            def forward(self, x):
                y = self.fc(x)
                return torch.einsum("ij,ij->ij", y, y)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "einsum_mod", raising=False)
    code, out, err = run_main(capsys, [
        "sim", "systolic", "--rows", "4", "--cols", "4", "--ifmap-kib", "4", "--weight-kib", "4",
        "--acc-kib", "4", "--workload", "einsum_mod:Net", "--fidelity", "model", "--json"])
    sys.modules.pop("einsum_mod", None)
    assert code == 0, err
    assert [x["name"] for x in json.loads(out)["layers"]] == ["fc"]
    assert err == ("hwloop: warning: workload 'einsum_mod:Net': net.einsum 'ij,ij->ij' is not "
                   "traced (an elementwise product, no index is contracted): its "
                   "multiplications are not counted\n")


def test_sim_read_ahead_hides_memory_latency(tmp_path):
    """``--read-ahead``: on a narrow, slow bus the next piece's A load outlasts each compute
    and its latency was paid per instruction; with read-ahead it hides under the next one."""
    csv = tmp_path / "tall.csv"
    csv.write_text("Layer Name, M, N, K,\ntall, 128, 4, 12,\n")
    design = ["--rows", "4", "--cols", "4", "--dataflow", "ws", "--bus-bytes", "4",
              "--mem-latency", "40", "--ifmap-kib", "4", "--weight-kib", "4", "--acc-kib", "4"]
    cycles = {}
    for flags in ((), ("--read-ahead",)):
        proc = subprocess.run(
            [sys.executable, "-m", "hwloop", "sim", "systolic", *design, *flags,
             "--workload", str(csv), "--fidelity", "model", "--json"],
            capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        cycles[flags] = json.loads(proc.stdout)["total"]["cycles"]
    assert cycles == {(): 816, ("--read-ahead",): 639}


def test_sim_table_never_cuts_a_number(tmp_path, capsys, monkeypatch):
    """In a terminal narrower than the table its lines run long (the terminal wraps them);
    rich would otherwise squeeze the columns and print "1,84…" for a cycle count."""
    from rich.console import Console

    import hwloop.cli

    monkeypatch.setattr(hwloop.cli, "stdout_console",
                        lambda: Console(width=50, file=sys.stdout, color_system=None))
    csv = tmp_path / "g.csv"
    csv.write_text("Layer Name, M, N, K,\na_long_layer_name, 1200, 1000, 900,\n")
    code, out, err = run_main(capsys, [
        "sim", "systolic", "--rows", "4", "--cols", "4", "--ifmap-kib", "4", "--weight-kib",
        "4", "--acc-kib", "4", "--workload", str(csv), "--fidelity", "model", "--json"])
    assert code == 0, err
    layer = json.loads(out)["layers"][0]
    code, out, err = run_main(capsys, [
        "sim", "systolic", "--rows", "4", "--cols", "4", "--ifmap-kib", "4", "--weight-kib",
        "4", "--acc-kib", "4", "--workload", str(csv), "--fidelity", "model"])
    assert code == 0, err
    row = next(line for line in out.splitlines() if "a_long_layer_name" in line)
    cells = [cell.strip() for cell in row.split("│")]
    assert f"{layer['cycles']:,}" in cells and f"{layer['macs']:,}" in cells
    assert "…" not in out


def test_generate_writes_verilog_manifest_and_core(tmp_path, capsys):
    out = tmp_path / "gen"
    code, stdout, err = run_main(capsys, ["generate", "systolic", "--rows", "2", "--cols", "3",
                                          "--dataflow", "ws", "-o", str(out)])
    assert code == 0, err
    name = "systolic_2x3_ws_i8a32"
    verilog = (out / f"{name}.v").read_text()
    assert f"module {name}" in verilog
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == name and manifest["params"]["cols"] == 3
    assert manifest["ports"] and {"name", "direction", "width"} <= set(manifest["ports"][0])
    direction = {p["name"]: p["direction"] for p in manifest["ports"]}
    assert {direction[n] for n in ("clk", "rst", "start", "instr_data", "a_resp_data")} \
        == {"input"}
    assert {direction[n] for n in ("done", "busy", "a_req_addr", "c_wr_data")} == {"output"}
    import hashlib

    assert manifest["files"][0]["sha256"] == hashlib.sha256(verilog.encode()).hexdigest()
    core = (out / f"{name}.core").read_text()
    assert core.startswith("CAPI=2:") and f"toplevel: {name}" in core
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]  # no temp leftovers
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()  # as mkdir makes it, not 0o700
    # regenerating replaces the folder as a whole
    code, _, _ = run_main(capsys, ["generate", "systolic", "--rows", "2", "--cols", "3",
                                   "--dataflow", "ws", "-o", str(out)])
    assert code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["gen"]


def test_generate_failure_keeps_an_existing_folder(tmp_path, capsys):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "old.txt").write_text("x")
    code, _, err = run_main(capsys, ["generate", "systolic", "--rows", "0", "-o", str(out)])
    assert code == 2
    assert (out / "old.txt").read_text() == "x"


def test_generate_refuses_a_folder_it_did_not_write(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "notes.txt").write_text("precious")
    code, _, err = run_main(capsys, ["generate", "systolic", "--rows", "2", "--cols", "2",
                                     "-o", str(mine)])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "exists and is not an hwloop output folder (a manifest.json and the files it " \
           "lists alone)" in err
    assert (mine / "sub" / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    # nor the current folder, or one holding it (it cannot be renamed away)
    work = tmp_path / "gen"
    code, _, _ = run_main(capsys, ["generate", "systolic", "--rows", "2", "--cols", "2",
                                   "-o", str(work)])
    assert code == 0
    monkeypatch.chdir(work)
    code, _, err = run_main(capsys, ["generate", "systolic", "--rows", "2", "--cols", "2",
                                     "-o", "."])
    assert code == 2 and "is the current folder or holds it" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen", "mine"]


def test_generate_refuses_an_earlier_output_holding_files_of_the_users(tmp_path, capsys):
    """A file the user put in an earlier output folder (a testbench, notes) was deleted with
    the folder when it was generated again: any folder with a manifest.json counted."""
    out = tmp_path / "gen"
    argv = ["generate", "cache", "--sets", "4", "--ways", "2", "--line-bytes", "16", "-o",
            str(out)]
    assert run_main(capsys, argv)[0] == 0
    before = sorted(p.name for p in out.iterdir())
    assert run_main(capsys, argv)[0] == 0  # an earlier output alone: replaced
    assert sorted(p.name for p in out.iterdir()) == before
    (out / "tb.sv").write_text("my testbench")
    code, _, err = run_main(capsys, argv)
    assert (code, err) == (2, f"hwloop: error: output folder {str(out)!r} exists and is not an "
                              f"hwloop output folder (a manifest.json and the files it lists "
                              f"alone): it would be replaced as a whole\n")
    assert (out / "tb.sv").read_text() == "my testbench"
    assert sorted(p.name for p in out.iterdir()) == sorted([*before, "tb.sv"])


def test_sim_waves_need_rtl(capsys):
    code, out, err = run_main(capsys, ["sim", "systolic", "--rows", "2", "--cols", "2",
                                       "--workload", "tiny", "--fidelity", "model", "--waves"])
    assert code == 2 and out == ""
    assert err == "hwloop: error: --waves needs --fidelity rtl (the model has no waveform)\n"
