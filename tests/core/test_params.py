import pytest

from hwloop.errors import ParameterError
from hwloop.hdl.systolic.params import SystolicParams


def test_defaults_are_valid():
    p = SystolicParams()
    assert (p.rows, p.cols, p.dataflow) == (8, 8, "os")
    assert p.name == "systolic_8x8_os_i8a32"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": 0}, "rows must be an integer in 1..64, not 0"),
        ({"cols": 65}, "cols must be an integer in 1..64, not 65"),
        ({"dataflow": "xy"}, "dataflow must be one of os, ws, not 'xy'"),
        ({"in_bits": 1}, "in_bits must be an integer in 2..16, not 1"),
        ({"in_bits": 8, "acc_bits": 15}, "acc_bits must be an integer in 16..64, not 15"),
        ({"bus_bytes": 24}, "bus_bytes must be a power of two in 1..128, not 24"),
        ({"rows": True}, "rows must be an integer in 1..64, not True"),
        ({"read_ahead": 1}, "read_ahead must be true or false, not 1"),
    ],
)
def test_bad_parameters_name_the_culprit(kwargs, message):
    with pytest.raises(ParameterError) as info:
        SystolicParams(**kwargs)
    assert str(info.value) == message


def test_from_dict_rejects_unknown_names():
    with pytest.raises(ParameterError, match="unknown systolic parameter 'depth'"):
        SystolicParams.from_dict({"depth": 3})


def test_hash_is_stable_and_distinguishes():
    assert SystolicParams().params_hash == SystolicParams().params_hash
    assert SystolicParams(rows=4).params_hash != SystolicParams().params_hash


def test_read_ahead_names_the_design_and_keeps_older_hashes():
    plain, ahead = SystolicParams(), SystolicParams(read_ahead=True)
    assert ahead.name == "systolic_8x8_os_i8a32_ra"
    assert ahead.params_hash != plain.params_hash
    # designs from before the parameter keep their results' keys
    assert plain.params_hash == "335b5e72802e69e6"
