"""Random tile mappings for the systolic tests that sweep many (design, layer, mapping) draws."""

from __future__ import annotations

import numpy as np

from hwloop.errors import ParameterError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.mapping import Gemm, Mapping, check_mapping


def random_mapping(rng: np.random.Generator, params: SystolicParams, gemm: Gemm, *,
                   free: int, n_blocks: int = 4) -> Mapping | None:
    """A random mapping of ``gemm`` fitted to ``params``, or None where it does not fit the
    scratchpads: 1-3 array blocks along the array's own dimensions (up to ``n_blocks - 1``
    along n), 1 to ``free - 1`` rows along the third (os k, ws m), either loop order."""
    R, C = params.rows, params.cols
    os_flow = params.dataflow == "os"
    mapping = Mapping(tile_m=R * int(rng.integers(1, 4)) if os_flow
                      else int(rng.integers(1, free)),
                      tile_n=C * int(rng.integers(1, n_blocks)),
                      tile_k=int(rng.integers(1, free)) if os_flow
                      else R * int(rng.integers(1, 4)),
                      order=str(rng.choice(["mnk", "nmk"]))).fit_to(params, gemm)
    try:
        check_mapping(params, gemm, mapping)
    except ParameterError:
        return None
    return mapping
