"""``hwloop regress`` for the prefetchers: each kind on random caches, RTL vs model bit-exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hwloop.errors import ParameterError
from hwloop.hdl.cache.params import RTL_POLICIES
from hwloop.hdl.cache.prefetcher import PREFETCHERS, PrefetcherConfig
from hwloop.hdl.cache.table import make_table, save_table

from .regress import ACCESSES, _cache_sample, check_geometry_of, run_case
from .regress import check_config as check_cache_config

COUNT = {"quick": 3, "full": 9}


def sample_configs(rng: np.random.Generator, level: str) -> list[dict[str, Any]]:
    out = []
    for i in range(COUNT[level]):
        kind = PREFETCHERS[i % len(PREFETCHERS)]
        config = _cache_sample(rng, level, str(rng.choice(RTL_POLICIES)))
        config["accesses"] = ACCESSES[level]
        config["prefetcher"] = {
            "kind": kind, "degree": int(rng.integers(1, 5)),
            "latency": int(rng.choice([1, 2, 4, 16, 40])), "queue": int(rng.choice([1, 4, 8, 16])),
            "entries": int(rng.choice([16, 64, 256])),
        }
        if kind == "table":
            config["prefetcher"]["table_geometry"] = {
                "entries": int(rng.choice([16, 256, 1024])),
                "entry_bits": int(rng.choice([4, 6, 8])), "history": int(rng.integers(0, 4))}
        out.append(config)
    return out


def check_config(config: dict[str, Any]) -> None:
    """Raise the generator's own error for a config it cannot run (a hand-written
    ``--config``): bad cache or prefetcher parameters, or table geometry."""
    check_cache_config(config)
    spec = dict(config["prefetcher"])
    spec.pop("table_geometry", None)
    if "kind" not in spec:
        raise ParameterError(f"prefetcher needs a kind ({', '.join(PREFETCHERS)})")
    if spec["kind"] == "table":
        check_geometry_of(config["prefetcher"], "prefetch", "prefetcher 'table'")
        spec["table"] = "delta.npz"  # made by the run: a stand-in name for the check
    PrefetcherConfig.from_dict(spec)


def run_config(config: dict[str, Any], *, seed: int, waves: bool,
               workdir: Path) -> dict[str, Any]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = dict(config["prefetcher"])
    geo = spec.pop("table_geometry", None)
    if spec["kind"] == "table":
        rng = np.random.default_rng(seed + 1)
        bits = geo["entry_bits"]
        # small deltas so that predictions land near the stream
        values = rng.integers(-4, 5, geo["entries"])
        values = np.clip(values, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        spec["table"] = workdir / "delta.npz"
        save_table(spec["table"], make_table(kind="prefetch", entry_bits=bits,
                                             history=geo["history"], values=values,
                                             confidence=rng.integers(0, 4, geo["entries"])))
    return run_case(config, PrefetcherConfig(**spec), seed=seed, waves=waves, workdir=workdir)
