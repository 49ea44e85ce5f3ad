"""Design spaces: parsing, every bad-input message, identity, split, encoding, sampling."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from hwloop.errors import ConfigError, ParameterError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.search.space import load_space, parse_space
from hwloop.sim.systolic.mapping import Mapping

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
name = "t"
objective = "cycles"
workloads = ["mlp", {name = "dqn", first = 2}]

[hardware]
rows = { values = [8, 2, 4] }
cols = { min = 2, max = 8, step = 2 }
dataflow = { values = ["os", "ws"] }
ifmap_kib = { min = 8, max = 100, log = true }
in_bits = 8

[mapping]
tile_m = { values = [1, 2], times = "rows" }
tile_n = { values = [1, 2], times = "cols" }
tile_k = { min = 16, max = 64, log = true }
order = { values = ["mnk", "nmk"] }

[budgets]
area = 2e6
cycles = 1_000_000
"""


def test_parse_good_space() -> None:
    space = parse_space(GOOD, path="t.toml")
    assert space.name == "t" and space.objective == "cycles" and space.fidelity == "model"
    assert space.dim("rows").values == (2, 4, 8)  # sorted
    assert space.dim("cols").values == (2, 4, 6, 8)
    assert space.dim("ifmap_kib").values == (8, 16, 32, 64)
    assert space.dim("in_bits").fixed
    assert space.budgets == {"area": 2e6, "cycles": 1e6}
    assert [(w.name, w.first) for w in space.workloads] == [("mlp", None), ("dqn", 2)]
    assert space.size == 3 * 4 * 2 * 4 * 1 * 2 * 2 * 3 * 2
    assert [d.name for d in space.free_dims][:2] == ["rows", "cols"]


def test_split_applies_times_and_defaults() -> None:
    space = parse_space(GOOD)
    point = {"rows": 4, "cols": 6, "dataflow": "ws", "ifmap_kib": 16, "in_bits": 8,
             "tile_m": 2, "tile_n": 1, "tile_k": 32, "order": "nmk"}
    params, mapping = space.split(point)
    assert params == SystolicParams(rows=4, cols=6, dataflow="ws", ifmap_kib=16, in_bits=8)
    assert mapping == Mapping(tile_m=8, tile_n=6, tile_k=32, order="nmk")


def test_split_without_mapping_and_illegal_combination() -> None:
    space = parse_space('workloads = ["mlp"]\n[hardware]\nin_bits = { values = [8, 16] }\n'
                        'acc_bits = 24\n')
    params, mapping = space.split({"in_bits": 8, "acc_bits": 24})
    assert mapping is None and params.acc_bits == 24
    with pytest.raises(ParameterError, match="acc_bits must be an integer in 32..64, not 24"):
        space.split({"in_bits": 16, "acc_bits": 24})


def test_out_bits_zero_stands_for_raw_sums() -> None:
    space = parse_space('workloads = ["mlp"]\n[hardware]\nout_bits = { values = [8, 0] }\n')
    assert space.dim("out_bits").values == (0, 8)
    assert space.split({"out_bits": 0})[0] == SystolicParams()
    assert space.split({"out_bits": 8})[0] == SystolicParams(out_bits=8)
    with pytest.raises(ParameterError, match="out_bits must be an integer in 2..32, not 1"):
        space.split({"out_bits": 1})


def test_switches_are_categorical() -> None:
    space = parse_space('workloads = ["mlp"]\n[hardware]\n'
                        'read_ahead = { values = [false, true] }\n')
    dim = space.dim("read_ahead")
    assert (dim.kind, dim.values) == ("categorical", (False, True))
    assert space.split({"read_ahead": True})[0] == SystolicParams(read_ahead=True)
    assert space.split(space.decode(space.encode({"read_ahead": True})))[0].read_ahead is True


def test_hash_identifies_parameters_budgets_objective_workloads() -> None:
    base = parse_space(GOOD)
    assert base.hash == parse_space(GOOD.replace('name = "t"', 'name = "other"')).hash
    assert base.hash == parse_space(GOOD + '\n', path="elsewhere.toml").hash
    for change in (("area = 2e6", "area = 3e6"), ('objective = "cycles"', 'objective = "edp"'),
                   ("first = 2", "first = 3"), ("max = 8, step = 2", "max = 8, step = 3")):
        assert parse_space(GOOD.replace(*change)).hash != base.hash, change


def test_sample_enumerate_encode_decode() -> None:
    space = parse_space(GOOD)
    rng = np.random.default_rng(0)
    points = list(space.enumerate())
    assert len(points) == space.size
    assert len({space.key(p) for p in points}) == space.size
    for _ in range(50):
        point = space.sample(rng)
        vector = space.encode(point)
        assert vector.shape == (space.encoded_size,)
        assert ((vector >= 0) & (vector <= 1)).all()
        assert space.decode(vector) == point
        neighbor = space.neighbors(point, rng)
        assert sum(neighbor[k] != point[k] for k in point) == 1
        space.normalize(neighbor)
    with pytest.raises(ParameterError, match="has 2304 points, more than the 100"):
        list(space.enumerate(limit=100))


def test_normalize_rejects_foreign_points() -> None:
    space = parse_space(GOOD)
    point = space.sample(np.random.default_rng(1))
    assert space.normalize({**point, "rows": np.int64(4)})["rows"] == 4
    with pytest.raises(ParameterError, match=r"^rows=3 is not in the space \(values: 2, 4, 8\)$"):
        space.normalize({**point, "rows": 3})
    with pytest.raises(ParameterError, match="^unknown parameter 'depth' in point$"):
        space.normalize({**point, "depth": 3})


def test_shipped_spaces_load() -> None:
    for name in ("edge", "cloud", "tiny", "demo"):
        space = load_space(ROOT / "constraints" / f"{name}.toml")
        assert space.name == name
        space.split(space.sample(np.random.default_rng(0)))
    edge, cloud = (load_space(ROOT / "constraints" / f"{n}.toml") for n in ("edge", "cloud"))
    assert edge.budgets["area"] < cloud.budgets["area"]
    assert {w.name for w in edge.workloads} == {"resnet50", "bert-base", "dqn", "mlp"}


BAD = [
    ('workloads = ["mlp"]\n[mapping]\ntile_m = { values = [0, 16] }\ntile_n = 16\n'
     'tile_k = { min = -4, max = 16 }\norder = "mnk"\n',
     "[mapping] tile_m must be positive integers, not 0"),
    ('workloads = ["mlp"]\n[mapping]\ntile_m = 16\ntile_n = 16\n'
     'tile_k = { min = -4, max = 16 }\norder = "mnk"\n',
     "[mapping] tile_k must be positive integers, not -4"),
    ('workloads = ["mlp"]\n[hardware]\ndepth = 3\n', "[hardware] unknown parameter 'depth'"),
    ('workloads = ["mlp"]\n[mapping]\ntile_q = 3\n', "[mapping] unknown parameter 'tile_q'"),
    ('workloads = ["mlp"]\n[hardware]\nrows = { values = [] }\n',
     "[hardware] rows: empty range (values must be a non-empty list)"),
    ('workloads = ["mlp"]\n[hardware]\nrows = { min = 8, max = 4 }\n',
     "[hardware] rows: empty range (min 8 > max 4)"),
    ('workloads = ["mlp"]\n[hardware]\nrows = { min = 8, max = 4, log = true }\n',
     "[hardware] rows: empty range (min 8 > max 4)"),
    ('workloads = ["mlp"]\n[budgets]\nwatts = 3\n',
     "[budgets] unknown metric 'watts' (known: cycles, energy_pj, edp, area, area_cells, "
     "sram_bits)"),
    ('workloads = ["mlp"]\n[budgets]\narea = -1\n',
     "[budgets] area must be a positive number, not -1"),
    ('objective = "speed"\nworkloads = ["mlp"]\n',
     "objective must be one of cycles, energy_pj, edp, not 'speed'"),
    ('fidelity = "gate"\nworkloads = ["mlp"]\n',
     "fidelity must be one of rtl, model, not 'gate'"),
    ('colour = 1\nworkloads = ["mlp"]\n',
     "unknown key 'colour' (known: name, objective, fidelity, hardware, mapping, budgets, "
     "workloads)"),
    ('name = "x"\n', 'no workloads (add workloads = ["mlp"] or [[workloads]] tables)'),
    ("workloads = []\n", "workloads must be a non-empty list of names or tables"),
    ('workloads = ["alexnet"]\n', "workloads[0]: unknown workload 'alexnet' (known: "),
    ('[[workloads]]\nname = "mlp"\nfirst = 0\n',
     "workloads[0]: first must be a positive integer, not 0"),
    ('workloads = ["mlp", "mlp"]\n', "workloads[1]: 'mlp' is already workloads[0]"),
    ('workloads = ["mlp"]\n[hardware]\nrows = { values = [2, "x"] }\n',
     "[hardware] rows: values must be all integers, all strings or all booleans, not [2, 'x']"),
    ('workloads = ["mlp"]\n[hardware]\nrows = { values = [2], min = 1 }\n',
     "[hardware] rows: give either values or min/max, not both ('min')"),
    ('workloads = ["mlp"]\n[hardware]\nrows = { min = 2 }\n',
     "[hardware] rows: needs values = [...] or min and max"),
    ('workloads = ["mlp"]\n[hardware]\nrows = { min = 2, max = 8, stride = 2 }\n',
     "[hardware] rows: unknown key 'stride' (known: values, min, max, step, log, times)"),
    ('workloads = ["mlp"]\n[hardware]\nrows = { values = [2], times = "rows" }\n',
     "[hardware] rows: 'times' is only for the mapping's tile sizes"),
    ('workloads = ["mlp"]\n[mapping]\ntile_m = { values = [1], times = "depth" }\n'
     'tile_n = 8\ntile_k = 8\norder = "mnk"\n',
     "[mapping] tile_m: times must be one of rows, cols, not 'depth'"),
    ('workloads = ["mlp"]\n[mapping]\ntile_m = 8\ntile_n = 8\ntile_k = 8\n',
     "[mapping] needs tile_m, tile_n, tile_k, order; missing 'order'"),
    ('workloads = ["mlp"]\n[mapping]\ntile_m = 8\ntile_n = 8\ntile_k = 8\n'
     'order = { values = ["kmn"] }\n',
     "[mapping] order 'kmn' is not a loop order (known: mnk, nmk)"),
    ('workloads = ["mlp"]\n[hardware]\nrows = { min = 2, max = 8, step = 0 }\n',
     "[hardware] rows: step must be a positive integer, not 0"),
    # values the generator refuses in every design of the space fail at load, not in a sweep
    ('workloads = ["mlp"]\n[hardware]\nrows = "eight"\n',
     "[hardware] rows: rows must be an integer in 1..64, not 'eight'"),
    ('workloads = ["mlp"]\n[hardware]\nrows = { values = [2, 100] }\n',
     "[hardware] rows: rows must be an integer in 1..64, not 100"),
    ('workloads = ["mlp"]\n[hardware]\ncols = { min = 1, max = 1000000, log = true }\n',
     "[hardware] cols: cols must be an integer in 1..64, not 128"),
    ('workloads = ["mlp"]\n[hardware]\nin_bits = 8\nacc_bits = { values = [8, 32] }\n',
     "[hardware] acc_bits: acc_bits must be an integer in 16..64, not 8"),
    ('workloads = ["mlp"]\n[hardware]\nout_bits = { values = [0, 8, 40] }\n',
     "[hardware] out_bits: out_bits must be an integer in 2..32, not 40"),
    ('workloads = ["mlp"]\n[hardware]\nrows = 4\ncols = { values = [4, 65] }\n',
     "[hardware] cols: cols must be an integer in 1..64, not 65"),
    # a range too long to list is one line, not a MemoryError (nor minutes of checks)
    ('workloads = ["mlp"]\n[hardware]\nacc_kib = { min = 1, max = 1000000000000 }\n',
     "[hardware] acc_kib: too many values (1000000000000; at most 1000000): give a larger "
     "step or log = true"),
    ('workloads = ["mlp"]\n[mapping]\ntile_m = 8\ntile_n = 8\norder = "mnk"\n'
     'tile_k = { min = 16, max = 100000000000, step = 16 }\n',
     "[mapping] tile_k: too many values (6250000000; at most 1000000): give a larger step "
     "or log = true"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_space_messages(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert "\n" not in str(info.value)


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('workloads = ["mlp"]\n[hardware]\nrows = = 4\n')
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value) == f"{path}:3: TOML syntax error: Invalid value"


def test_toml_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    """tomllib recurses into nested arrays and inline tables: a RecursionError traceback."""
    path = tmp_path / "deep.toml"
    for nested in ("[" * 100_000 + "]" * 100_000, "{a=" * 5_000 + "1" + "}" * 5_000):
        path.write_text(f'name = "t"\nx = {nested}\n')
        with pytest.raises(ConfigError) as info:
            load_space(path)
        assert str(info.value) == (f"{path}: TOML syntax error: arrays or inline tables nested "
                                   f"too deeply")


def test_hardware_values_legal_with_some_other_value_load() -> None:
    space = parse_space('workloads = ["mlp"]\n[hardware]\nin_bits = { values = [4, 8] }\n'
                        'acc_bits = { values = [8, 32] }\nout_bits = { values = [0, 8, 24] }\n')
    assert space.dim("acc_bits").values == (8, 32)  # acc_bits 8 is legal with in_bits 4
    with pytest.raises(ParameterError, match=r"^acc_bits must be an integer in 16\.\.64, not 8$"):
        space.split({"in_bits": 8, "acc_bits": 8, "out_bits": 0})  # one infeasible design


def test_toml_syntax_error_at_the_end_names_the_last_line(tmp_path: Path) -> None:
    path = tmp_path / "s1.toml"
    path.write_text('name = "s1"\nworkloads = ["mlp"\n')
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value) == f"{path}:2: TOML syntax error: Unclosed array"
    path.write_text('name = "s1')  # no newline at the end
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value) == f"{path}:1: TOML syntax error: Unterminated string"


CSV = "Layer name, M, N, K,\nfc1, 16, 16, 16,\n"


def test_a_missing_workload_file_fails_at_load_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('name = "w"\n\nworkloads = ["mlp", "nothere.csv"]\n')
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value) == (f"{path}:3: workloads[1]: workload file "
                               f"'{tmp_path / 'nothere.csv'}' does not exist")
    path.write_text("[[workloads]]\nname = 'layers/nothere.csv'\nfirst = 1\n")
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value) == (f"{path}:2: workloads[0]: workload file "
                               f"'{tmp_path / 'layers' / 'nothere.csv'}' does not exist")
    (tmp_path / "layers" / "nothere.csv").mkdir(parents=True)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value) == (f"{path}:2: workloads[0]: workload file "
                               f"'{tmp_path / 'layers' / 'nothere.csv'}' is a folder")


def test_a_malformed_workload_file_fails_at_load(tmp_path: Path) -> None:
    (tmp_path / "w.csv").write_text(CSV + "fc2, 16, 16,\n")
    (tmp_path / "w.toml").write_text('workloads = ["w.csv"]\n')
    with pytest.raises(ConfigError) as info:
        load_space(tmp_path / "w.toml")
    assert str(info.value) == f"{tmp_path / 'w.csv'}:3: expected 4 fields (Layer Name, M, N, " \
                              "K), got 3"


def test_workload_files_are_relative_to_the_space_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "w.csv").write_text(CSV)
    (tmp_path / "spaces" / "w.toml").write_text('workloads = ["w.csv"]\n')
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    space = load_space(Path("..") / "spaces" / "w.toml")
    monkeypatch.chdir(tmp_path)  # workers may run in another folder
    [workload] = space.load_workloads()
    assert [(layer.m, layer.n, layer.k) for layer in workload.layers] == [(16, 16, 16)]
    assert space.workloads[0].name == "w.csv"


def test_the_hash_covers_the_contents_of_workload_files(tmp_path: Path) -> None:
    (tmp_path / "w.csv").write_text(CSV)
    (tmp_path / "w.toml").write_text('workloads = ["w.csv"]\n')
    before = load_space(tmp_path / "w.toml").hash
    assert load_space(tmp_path / "w.toml").hash == before
    (tmp_path / "w.csv").write_text(CSV.replace("16, 16, 16", "64, 64, 64"))
    assert load_space(tmp_path / "w.toml").hash != before
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("w.csv", "w.toml"):
        (tmp_path / name).rename(moved / name)
    (moved / "w.csv").write_text(CSV)
    assert load_space(moved / "w.toml").hash == before  # the contents count, not the folder


def test_the_hash_covers_the_layers_of_a_module_workload(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    helper = tmp_path / "hashed_widths_xyz.py"
    helper.write_text("WIDTH = 16\n")
    (tmp_path / "hashed_net_xyz.py").write_text(
        "from torch import nn\n"
        "import hashed_widths_xyz\n"
        "def Net():\n"
        "    return nn.Sequential(nn.Linear(8, hashed_widths_xyz.WIDTH), nn.Linear("
        "hashed_widths_xyz.WIDTH, 4))\n")
    (tmp_path / "m.toml").write_text('workloads = ["hashed_net_xyz:Net"]\n')
    before = load_space(tmp_path / "m.toml").hash

    def reloaded_hash() -> str:
        for name in ("hashed_net_xyz", "hashed_widths_xyz"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        return load_space(tmp_path / "m.toml").hash

    helper.write_text("# the same layers\nWIDTH = 16\n")
    assert reloaded_hash() == before
    helper.write_text("WIDTH = 64\n")  # an edit to what the module imports
    assert reloaded_hash() != before
    (tmp_path / "m.toml").write_text('name = "m"\nworkloads = ["no_such_net_xyz:Net"]\n')
    with pytest.raises(ConfigError) as info:
        load_space(tmp_path / "m.toml")
    assert str(info.value) == (
        f"{tmp_path / 'm.toml'}:2: workloads[0]: workload 'no_such_net_xyz:Net': cannot import "
        "module 'no_such_net_xyz': ModuleNotFoundError: No module named 'no_such_net_xyz'")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_space(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: cannot read space file: " \
                              "No such file or directory"
    path = tmp_path / "latin1.toml"
    path.write_bytes('workloads = ["mlp"]\n# r\xe9seau\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value) == f"{path}:2: not UTF-8 text (byte 0xe9)"
    path.write_bytes(b"\xef\xbb\xbf" + (Path(__file__).parents[2] / "constraints" / "tiny.toml")
                     .read_bytes())  # a byte-order mark, as Windows editors write it
    assert load_space(path).name == "tiny"
