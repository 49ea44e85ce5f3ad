"""Regression configs for ``hwloop regress``: random designs and layers, RTL vs golden vs model."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwloop.errors import HwloopError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.golden import random_operands, stored_golden
from hwloop.sim.systolic.mapping import Gemm, Mapping, default_mapping
from hwloop.sim.systolic.model import model_gemm

#: Designs per level, GEMMs per design, largest array side.
_LEVELS = {"quick": (2, 2, 8), "full": (6, 3, 16)}
_WIDTHS = ((4, 12), (8, 32), (16, 40), (6, 20))


def _odd(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi) // 2 * 2 + 1)


def sample_configs(rng: np.random.Generator, level: str) -> list[dict[str, Any]]:
    """Configs from the declared parameter space (arrays from a single PE up): both dataflows,
    at least two operand widths, odd M, N, K. Each design appears with several layers so one
    build serves them all. Some designs requantize their output (``out_bits``: the quick
    matrix's ws design, in the full one both dataflows), with the default shift or a random
    one (``out_shift``); some have ``read_ahead`` (the quick matrix's ws design, in the full
    one a design of each dataflow)."""
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {', '.join(_LEVELS)}, not {level!r}")
    designs, per_design, side = _LEVELS[level]
    widths = [int(i) for i in rng.permutation(len(_WIDTHS))]
    configs = []
    for d in range(designs):
        if d < len(_WIDTHS):
            in_bits, acc_bits = _WIDTHS[widths[d]]
        else:  # any width the generator takes
            in_bits = int(rng.integers(2, 17))
            acc_bits = int(rng.integers(2 * in_bits, 65))
        params = SystolicParams(
            rows=int(rng.integers(1, side + 1)), cols=int(rng.integers(1, side + 1)),
            dataflow=("os", "ws")[d % 2], in_bits=in_bits, acc_bits=acc_bits,
            ifmap_kib=int(rng.choice([4, 8, 16])), weight_kib=int(rng.choice([4, 8, 16])),
            acc_kib=int(rng.choice([8, 16])), bus_bytes=int(2 ** rng.integers(0, 8)),
            mem_latency=int(rng.integers(0, 30) if rng.random() < 0.8
                            else rng.choice([64, 200])))
        if d % 4 in (1, 2):
            params = dataclasses.replace(params, out_bits=int(rng.integers(2, acc_bits + 1)))
        if d % 3 == 1:
            params = dataclasses.replace(params, read_ahead=True)
        for g in range(per_design):
            gemm = Gemm(m=_odd(rng, 1, 6 * params.rows), n=_odd(rng, 1, 6 * params.cols),
                        k=_odd(rng, 1, 80))
            mapping = None
            if g % 2 == 1:  # small tiles: many steps, double buffering, k accumulation
                R, C = params.rows, params.cols
                order = str(rng.choice(["mnk", "nmk"]))
                if params.dataflow == "os":
                    mapping = Mapping(tile_m=R, tile_n=C, tile_k=int(rng.integers(1, 17)),
                                      order=order).to_dict()
                else:
                    mapping = Mapping(tile_m=int(rng.integers(1, 17)), tile_n=C, tile_k=R,
                                      order=order).to_dict()
            config = {"params": params.to_dict(), "gemm": gemm.to_dict(), "mapping": mapping}
            if params.out_bits is not None:  # the default chooser's shift, or any legal one
                config["out_shift"] = (None if g % 2 == 0
                                       else int(rng.integers(0, params.acc_bits)))
            configs.append(config)
    return configs


def check_config(config: dict[str, Any]) -> None:
    """Raise the generator's own error for a config it cannot run (a hand-written
    ``--config``): bad parameters, GEMM or mapping."""
    from hwloop.sim.systolic.mapping import check_mapping

    params = SystolicParams.from_dict(config["params"])
    gemm = Gemm.from_dict(config["gemm"])
    if config.get("mapping"):
        check_mapping(params, gemm, Mapping.from_dict(config["mapping"]).fit_to(params, gemm))


def run_config(config: dict[str, Any], *, seed: int, waves: bool, workdir: Path) -> dict[str, Any]:
    """Co-simulate one config with random operands (``seed``); compare with golden and model."""
    from hwloop.sim.systolic.rtl import RtlSimulator

    start = time.monotonic()
    try:
        params = SystolicParams.from_dict(config["params"])
        gemm = Gemm.from_dict(config["gemm"])
        mapping = (Mapping.from_dict(config["mapping"]) if config.get("mapping")
                   else default_mapping(params, gemm))
        rng = np.random.default_rng(seed)
        a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
        sim = RtlSimulator(params, waves=waves, workdir=Path(workdir))
        sim.build()
        run = sim.run([(gemm, mapping, a, b)], out_shifts=[config.get("out_shift")])[0]
    except HwloopError as exc:
        return {"passed": False, "detail": f"seed={seed}: {exc}", "cycles": 0,
                "model_cycles": 0, "waves": None}
    model = model_gemm(params, gemm, mapping)
    shift = run.extra["out_shift"]
    gold = stored_golden(a, b, params, shift=shift)
    problems = []
    if run.c is None or run.c.shape != gold.shape or not np.array_equal(run.c, gold):
        bad = int(np.count_nonzero(run.c != gold)) if run.c is not None else gold.size
        problems.append(f"{bad} of {gold.size} results differ from the golden model")
    error = abs(model.cycles - run.cycles) / max(run.cycles, 1)
    if error > 0.01:
        problems.append(f"model cycles {model.cycles} vs RTL {run.cycles} ({error:.1%})")
    shifted = "" if params.out_bits is None else f" shift={shift}"
    detail = (f"seed={seed} {params.name} m={gemm.m} n={gemm.n} k={gemm.k}{shifted} "
              f"tiles={mapping.tile_m}x{mapping.tile_n}x{mapping.tile_k} {mapping.order}: "
              + ("; ".join(problems) if problems else
                 f"bit-exact, model error {error:.2%}, {time.monotonic() - start:.1f} s"))
    return {"passed": not problems, "detail": detail, "cycles": run.cycles,
            "model_cycles": model.cycles,
            "waves": str(sim.waves_path) if sim.waves_path is not None else None}
