"""Design-space ranges at their size limit, and decoding of vectors between grid points
(what the model-based methods propose) to the nearest value."""

from __future__ import annotations

import numpy as np
import pytest

from hwloop.errors import ConfigError
from hwloop.search.space import MAX_RANGE_VALUES, parse_space

SPACE = """
name = "t"
objective = "cycles"
workloads = ["mlp"]
[hardware]
rows = { values = [1, 2, 4, 8, 16] }
cols = COLS
"""

MAPPING = """
[mapping]
tile_m = 8
tile_n = 8
tile_k = RANGE
order = "mnk"
"""


def test_a_range_of_exactly_the_most_values_is_allowed():
    space = parse_space((SPACE + MAPPING).replace("COLS", "4").replace(
        "RANGE", f"{{ min = 1, max = {MAX_RANGE_VALUES} }}"))
    assert len(space.dim("tile_k").values) == MAX_RANGE_VALUES
    with pytest.raises(ConfigError, match=rf"too many values \({MAX_RANGE_VALUES + 1}; at "
                                          rf"most {MAX_RANGE_VALUES}\)"):
        parse_space((SPACE + MAPPING).replace("COLS", "4").replace(
            "RANGE", f"{{ min = 0, max = {MAX_RANGE_VALUES} }}"))


def test_decode_rounds_to_the_nearest_value():
    space = parse_space(SPACE.replace("COLS", "{ values = [2, 3] }"))
    rows = space.dim("rows").values  # five values: index = 4 * x
    for x, want in ((0.0, 1), (0.12, 1), (0.13, 2), (0.6, 4), (0.63, 8), (0.8, 8),
                    (0.87, 8), (0.88, 16), (1.0, 16)):
        point = space.decode(np.array([x, 1.0]))
        assert point["rows"] == want, (x, point)
        assert point["cols"] == 3
    assert rows == (1, 2, 4, 8, 16)
