"""``out_bits`` (requantized write-back) through parameters, the CLI, the manifest and spaces."""

from __future__ import annotations

import hashlib
import json

import pytest

from hwloop.errors import ParameterError
from hwloop.hdl.systolic import ports
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.search.space import parse_space
from tests.core.cli_helpers import run_main


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"out_bits": 1}, "out_bits must be an integer in 2..32, not 1"),
    ({"out_bits": 33}, "out_bits must be an integer in 2..32, not 33"),
    ({"acc_bits": 20, "out_bits": 21}, "out_bits must be an integer in 2..20, not 21"),
    ({"out_bits": "8"}, "out_bits must be an integer in 2..32, not '8'"),
    ({"out_bits": True}, "out_bits must be an integer in 2..32, not True"),
])
def test_bad_out_bits_name_the_culprit(kwargs, message):
    with pytest.raises(ParameterError) as info:
        SystolicParams(**kwargs)
    assert str(info.value) == message


def test_name_dict_and_hash():
    raw, int8 = SystolicParams(), SystolicParams(out_bits=8)
    assert raw.name == "systolic_8x8_os_i8a32" and int8.name == "systolic_8x8_os_i8a32o8"
    assert raw.to_dict()["out_bits"] is None and int8.to_dict()["out_bits"] == 8
    assert SystolicParams.from_dict(int8.to_dict()) == int8
    assert SystolicParams.from_dict(raw.to_dict()) == raw
    # designs without out_bits keep the hash they had before the parameter existed
    before = {k: v for k, v in raw.to_dict().items() if k not in ("out_bits", "read_ahead")}
    expected = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert raw.params_hash == expected != int8.params_hash


def test_c_port_width_follows_out_bits():
    width = {p["name"]: p["width"] for p in ports(SystolicParams(rows=2, cols=3, out_bits=5))}
    assert width["c_wr_data"] == 3 * 5
    width = {p["name"]: p["width"] for p in ports(SystolicParams(rows=2, cols=3))}
    assert width["c_wr_data"] == 3 * 32


def test_generate_out_bits_manifest(tmp_path, capsys):
    out = tmp_path / "gen"
    code, _, err = run_main(capsys, ["generate", "systolic", "--rows", "2", "--cols", "2",
                                     "--out-bits", "8", "-o", str(out)])
    assert code == 0, err
    name = "systolic_2x2_os_i8a32o8"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == name and manifest["params"]["out_bits"] == 8
    assert {"name": "c_wr_data", "direction": "output", "width": 16} in manifest["ports"]
    assert f"module {name}" in (out / f"{name}.v").read_text()


def test_generate_bad_out_bits_is_one_line(tmp_path, capsys):
    out = tmp_path / "gen"
    code, _, err = run_main(capsys, ["generate", "systolic", "--out-bits", "40", "-o", str(out)])
    assert code == 2
    assert err.strip().splitlines() == [
        "hwloop: error: out_bits must be an integer in 2..32, not 40"]
    assert not out.exists()


@pytest.fixture
def no_synthesis(monkeypatch):
    import importlib

    from hwloop.sim.area import AreaResult

    fixed = AreaResult(area=1.0, area_cells=1, sram_bits=1, cell_counts={}, synth_s=0.0,
                       cached=True)
    monkeypatch.setattr(importlib.import_module("hwloop.sim.area"), "cached_area",
                        lambda params, **_: fixed)


def test_sim_out_bits_and_shift_round_trip(tmp_path, capsys, no_synthesis):
    csv = tmp_path / "g.csv"
    csv.write_text("Layer Name, M, N, K,\nfirst, 12, 10, 9,\nsecond, 7, 5, 130,\n")
    base = ["sim", "systolic", "--rows", "2", "--cols", "2", "--ifmap-kib", "4",
            "--weight-kib", "4", "--acc-kib", "4", "--workload", str(csv), "--fidelity",
            "model", "--json", "--no-reuse"]
    code, out, err = run_main(capsys, [*base, "--out-bits", "8", "--out-shift", "5"])
    assert code == 0, err
    data = json.loads(out)
    assert data["params"]["out_bits"] == 8
    assert [x["out_shift"] for x in data["layers"]] == [5, 5]
    code, out, err = run_main(capsys, [*base, "--out-bits", "8"])
    assert code == 0, err
    int8 = json.loads(out)
    assert [x["out_shift"] for x in int8["layers"]] == [2 * 8 - 1 + 2 - 8, 2 * 8 - 1 + 4 - 8]
    code, out, err = run_main(capsys, base)
    assert code == 0, err
    raw = json.loads(out)
    assert raw["params"]["out_bits"] is None
    assert [x["out_shift"] for x in raw["layers"]] == [None, None]
    for a, b in zip(raw["layers"], int8["layers"], strict=True):
        assert a["actions"]["dram_write_bytes"] == 4 * b["actions"]["dram_write_bytes"]


@pytest.mark.parametrize(("args", "message"), [
    (["--out-shift", "3"], "out_shift needs a design with out_bits (systolic_2x2_os_i8a32 "
                           "writes back the raw sums)"),
    (["--out-bits", "8", "--out-shift", "32"], "out_shift must be an integer in 0..31, not 32"),
    (["--out-bits", "1"], "out_bits must be an integer in 2..32, not 1"),
])
def test_sim_bad_out_shift_is_one_line(capsys, args, message):
    code, out, err = run_main(capsys, ["sim", "systolic", "--rows", "2", "--cols", "2",
                                       "--workload", "tiny", "--fidelity", "model", "--json",
                                       *args])
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"hwloop: error: {message}"]


def test_space_out_bits_key():
    space = parse_space('workloads = ["mlp"]\n[hardware]\nout_bits = { values = [8, 16] }\n'
                        'acc_bits = 24\n')
    params, _ = space.split({"out_bits": 8, "acc_bits": 24})
    assert params.out_bits == 8 and params.name.endswith("a24o8")
    assert parse_space('workloads = ["mlp"]\n[hardware]\nrows = 4\n').split(
        {"rows": 4})[0].out_bits is None
    bad = parse_space('workloads = ["mlp"]\n[hardware]\nout_bits = 32\nacc_bits = 24\n')
    with pytest.raises(ParameterError, match=r"^out_bits must be an integer in 2..24, not 32$"):
        bad.split({"out_bits": 32, "acc_bits": 24})
