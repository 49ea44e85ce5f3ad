"""Workload lowering and SCALE-Sim topology parsing at edges the network tests do not reach:
a batched convolution, zero and over-wide fields naming their line, several trailing commas,
and the repeat totals of duplicate shapes."""

from __future__ import annotations

import pytest

from hwloop.errors import ConfigError
from hwloop.workloads import Layer, dedupe, load_topology_csv


def test_a_batched_conv_has_batch_times_the_output_rows():
    one = Layer.conv("c", ifmap_h=9, ifmap_w=7, filter_h=3, filter_w=2, channels=5,
                     num_filters=4, stride=2)
    four = Layer.conv("c", ifmap_h=9, ifmap_w=7, filter_h=3, filter_w=2, channels=5,
                      num_filters=4, stride=2, batch=4)
    # outputs (9-3)//2+1 = 4 by (7-2)//2+1 = 3
    assert one.shape == (4 * 3, 4, 3 * 2 * 5)
    assert four.shape == (4 * 4 * 3, 4, 3 * 2 * 5)
    assert four.macs == 4 * one.macs


@pytest.mark.parametrize(("row", "message"), [
    ("c1, 5, 3, 2, 4, 1, 8, 1,", "Filter Width 4 is larger than IFMAP Width 3"),
    ("c1, 5, 3, 2, 3, 0, 8, 1,", "Channels must be a positive integer, not 0"),
    ("c1, 5, 3, 2, 3, 1, 8, 0,", "Strides must be a positive integer, not 0"),
])
def test_conv_rows_name_their_line(tmp_path, row, message):
    path = tmp_path / "t.csv"
    path.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    f"Channels, Num Filter, Strides,\nc0, 5, 3, 2, 3, 1, 8, 1,\n{row}\n")
    with pytest.raises(ConfigError) as info:
        load_topology_csv(path)
    assert str(info.value) == f"{path}:3: {message}"


def test_a_gemm_dimension_of_zero_names_its_line(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("Layer Name, M, N, K,\nfc, 4, 0, 4,\n")
    with pytest.raises(ConfigError) as info:
        load_topology_csv(path)
    assert str(info.value) == f"{path}:2: N must be a positive integer, not 0"


def test_every_trailing_empty_cell_is_dropped(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("Layer Name, M, N, K,,,\nfc1, 4, 5, 6,,\nfc2, 7, 8, 9, , ,\n")
    workload = load_topology_csv(path)
    assert [(x.name, x.shape) for x in workload.layers] == [("fc1", (4, 5, 6)),
                                                            ("fc2", (7, 8, 9))]


def test_dedupe_sums_the_repeats_of_each_shape():
    a = Layer(name="a", m=2, n=3, k=4, repeat=2)
    b = Layer(name="b", m=2, n=3, k=5)
    a2 = Layer(name="a2", m=2, n=3, k=4, repeat=3)
    a3 = Layer(name="a3", m=2, n=3, k=4)
    assert dedupe([a, b, a2, a3]) == [(a, 6), (b, 1)]
