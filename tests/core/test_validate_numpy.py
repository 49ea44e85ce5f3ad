"""Integer parameters given as numpy scalars (a sweep over ``np.arange``): accepted wherever an
integer is checked and stored as plain ``int``; bools and floats are refused as before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwloop.errors import ParameterError, WorkloadError
from hwloop.hdl.cache.params import CacheConfig
from hwloop.hdl.systolic import generate_verilog, ports
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.manifest import write_design
from hwloop.sim.systolic.mapping import Gemm, Mapping
from hwloop.validate import check_int, is_int, is_integer, plain_int
from hwloop.workloads import Layer, Workload

SYSTOLIC = dict(rows=4, cols=2, in_bits=8, acc_bits=32, ifmap_kib=16, weight_kib=8, acc_kib=4,
                bus_bytes=8, mem_latency=3, out_bits=8)


def numpy_ints(values):
    """``values`` with every int a numpy integer, of several widths and signednesses."""
    kinds = [np.int64, np.int32, np.uint16, np.int16, np.uint8]
    return {key: kinds[i % len(kinds)](value) for i, (key, value) in enumerate(values.items())}


def assert_plain(obj, names):
    for name in names:
        assert type(getattr(obj, name)) is int, name


def test_is_integer_takes_numpy_integers_but_no_bool_or_float():
    assert all(is_integer(v) for v in (3, np.int8(3), np.uint64(3), np.int64(-1)))
    assert not any(is_integer(v) for v in (True, np.True_, 4.0, np.float64(4.0), "4", None))
    assert type(plain_int(np.uint16(7))) is int and plain_int(np.uint16(7)) == 7
    assert [plain_int(v) for v in (True, 4.0, "4")] == [True, 4.0, "4"]  # left to refuse
    assert not is_int(np.int64(3))


def test_check_int_alone_refuses_a_numpy_integer_and_out_shift_stores_it_as_int():
    """check_int alone stores nothing: a value that passes is used as given, and a numpy one
    would fail json.dumps later, so it is refused as before. evaluate's out_shift (in the
    reuse key and the results) is made an int before its check, as the dataclasses do."""
    from hwloop.sim import evaluate

    with pytest.raises(ParameterError) as info:
        check_int("out_shift", np.int64(3), 0, 31)
    assert str(info.value) == "out_shift must be an integer in 0..31, not np.int64(3)"
    design = SystolicParams(rows=4, cols=4, out_bits=8)
    given = evaluate(design, "tiny", fidelity="model", out_shift=np.int64(3)).to_dict()
    plain = evaluate(design, "tiny", fidelity="model", out_shift=3).to_dict()
    json.dumps(given)
    assert [type(layer["out_shift"]) for layer in given["layers"]] == [int, int]
    assert given["layers"] == plain["layers"] and given["cycles"] == plain["cycles"]
    with pytest.raises(ParameterError) as info:
        evaluate(design, "tiny", fidelity="model", out_shift=np.float64(3))
    assert str(info.value) == "out_shift must be an integer in 0..31, not np.float64(3.0)"


def test_evaluate_takes_a_numpy_seed_as_int():
    """evaluate's seed (in the reuse key and the RTL error messages) may be a numpy integer,
    as a loop over np.arange gives it; a float or a negative one is refused as before."""
    from hwloop.sim import evaluate

    design = SystolicParams(rows=2, cols=2)
    given = evaluate(design, "tiny", fidelity="model", seed=np.int64(5)).to_dict()
    plain = evaluate(design, "tiny", fidelity="model", seed=5).to_dict()
    json.dumps(given)
    assert given["layers"] == plain["layers"] and given["cycles"] == plain["cycles"]
    for bad, shown in ((np.float64(5), "np.float64(5.0)"), (np.int64(-1), "-1")):
        with pytest.raises(ParameterError) as info:
            evaluate(design, "tiny", fidelity="model", seed=bad)
        assert str(info.value) == f"seed must be a non-negative integer, not {shown}"


def test_systolic_params_store_numpy_integers_as_int(tmp_path):
    given = numpy_ints(SYSTOLIC)
    p = SystolicParams(**given)
    assert_plain(p, SYSTOLIC)
    plain = SystolicParams(**SYSTOLIC)
    assert p == plain and hash(p) == hash(plain)
    assert p.name == plain.name and p.params_hash == plain.params_hash
    assert json.dumps(p.to_dict()) == json.dumps(plain.to_dict())
    # the design's manifest, written as `hwloop generate systolic` writes it (the Verilog is
    # generated from the numpy-built parameters; equal parameters generate the same)
    verilog = generate_verilog(p)
    manifests = []
    for params, out in ((p, tmp_path / "np"), (plain, tmp_path / "int")):
        write_design(out, generator="systolic", name=params.name, params=params.to_dict(),
                     ports=list(ports(params)), verilog=verilog, description="d")
        manifests.append((out / "manifest.json").read_text())
    assert manifests[0] == manifests[1]


def test_cache_config_gemm_mapping_and_layer_store_numpy_integers_as_int():
    cache = dict(sets=64, ways=4, line_bytes=32, addr_bits=32, seed=7)
    c = CacheConfig(**numpy_ints(cache), policy="random")
    assert_plain(c, cache)
    assert c.to_dict() == CacheConfig(**cache, policy="random").to_dict()
    g = Gemm(**numpy_ints(dict(m=5, n=6, k=7)))
    assert_plain(g, "mnk") and g == Gemm(m=5, n=6, k=7)
    tiles = dict(tile_m=8, tile_n=16, tile_k=32)
    mapping = Mapping(**numpy_ints(tiles))
    assert_plain(mapping, tiles) and mapping == Mapping(**tiles)
    layer = Layer(name="g", **numpy_ints(dict(m=2, n=3, k=4, repeat=5)))
    assert_plain(layer, ("m", "n", "k", "repeat"))
    conv = Layer.conv("c", **numpy_ints(dict(ifmap_h=10, ifmap_w=12, filter_h=3, filter_w=3,
                                             channels=4, num_filters=8, stride=2, batch=2)))
    assert json.dumps(conv.to_dict()) == json.dumps(Layer.conv(
        "c", ifmap_h=10, ifmap_w=12, filter_h=3, filter_w=3, channels=4, num_filters=8,
        stride=2, batch=2).to_dict())
    assert_plain(conv, conv.to_dict().keys() - {"name", "kind"})
    assert Workload("w", (layer, conv)).select(first=np.int64(1)).layers == (layer,)


def test_an_out_of_range_numpy_integer_is_named_as_the_plain_value():
    with pytest.raises(ParameterError) as info:
        SystolicParams(rows=np.int64(65))
    assert str(info.value) == "rows must be an integer in 1..64, not 65"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rows": True}, "rows must be an integer in 1..64, not True"),
    ({"rows": np.True_}, "rows must be an integer in 1..64, not np.True_"),
    ({"rows": 4.0}, "rows must be an integer in 1..64, not 4.0"),
    ({"cols": np.float64(4.0)}, "cols must be an integer in 1..64, not np.float64(4.0)"),
    ({"in_bits": "8"}, "in_bits must be an integer in 2..16, not '8'"),
    ({"bus_bytes": 8.0}, "bus_bytes must be a power of two in 1..128, not 8.0"),
    ({"out_bits": np.float32(8)}, "out_bits must be an integer in 2..32, not np.float32(8.0)"),
])
def test_bools_floats_and_strings_are_still_refused(kwargs, message):
    with pytest.raises(ParameterError) as info:
        SystolicParams(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(("make", "message"), [
    (lambda: CacheConfig(sets=64.0, ways=4, line_bytes=32),
     "sets must be a power of two, not 64.0"),
    (lambda: CacheConfig(sets=64, ways=np.True_, line_bytes=32),
     "ways must be an integer in 1..64, not np.True_"),
    (lambda: Gemm(m=True, n=1, k=1), "gemm m must be a positive integer, not True"),
    (lambda: Gemm(m=1, n=np.float64(2), k=1),
     "gemm n must be a positive integer, not np.float64(2.0)"),
    (lambda: Mapping(tile_m=8, tile_n=8.0, tile_k=8),
     "mapping tile_n must be a positive integer, not 8.0"),
])
def test_other_parameters_still_refuse_bools_and_floats(make, message):
    with pytest.raises(ParameterError) as info:
        make()
    assert str(info.value) == message


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(m=np.True_), "layer 'x': m must be a positive integer, not np.True_"),
    (dict(k=4.0), "layer 'x': k must be a positive integer, not 4.0"),
    (dict(repeat=np.float64(2)), "layer 'x': repeat must be a positive integer, "
                                 "not np.float64(2.0)"),
])
def test_layer_still_refuses_bools_and_floats(kwargs, message):
    with pytest.raises(WorkloadError) as info:
        Layer(name="x", **(dict(m=1, n=1, k=1) | kwargs))
    assert str(info.value) == message
