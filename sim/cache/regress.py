"""``hwloop regress`` for the cache: random geometries and policies, RTL vs model bit-exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hwloop.errors import ParameterError
from hwloop.hdl.cache.params import RTL_POLICIES, CacheConfig
from hwloop.hdl.cache.prefetcher import PrefetcherConfig
from hwloop.hdl.cache.table import check_geometry, make_table, save_table

from .patterns import adversarial, gaps
from .player import check

ACCESSES = {"quick": 100_000, "full": 1_000_000}
COUNT = {"quick": 5, "full": 12}


def _cache_sample(rng: np.random.Generator, level: str, policy: str) -> dict[str, Any]:
    if level == "full":
        return _corner_sample(rng, policy)
    ways = int(rng.choice([1, 2, 4, 8] if policy == "plru" else [1, 2, 3, 4, 6, 8]))
    config: dict[str, Any] = {
        "sets": int(rng.choice([1, 4, 16, 64, 256])),
        "ways": ways,
        "line_bytes": int(rng.choice([8, 16, 32, 64])),
        "addr_bits": int(rng.choice([32, 40, 48])),
        "policy": policy,
        "seed": int(rng.integers(1, 65536)),
        "accesses": ACCESSES[level],
        "gaps": bool(rng.random() < 0.5),
    }
    if policy == "table":
        config["table_geometry"] = {"entries": int(rng.choice([16, 256, 2048])),
                                    "entry_bits": int(rng.choice([3, 5, 8])),
                                    "history": int(rng.integers(0, 4))}
    return config


def _corner_sample(rng: np.random.Generator, policy: str) -> dict[str, Any]:
    """``--full``: the declared space out to its corners, where the quick draws never go:
    up to 64 ways, address spaces down to one tag bit above the index (few line-address bits:
    prefetch candidates that wrap onto each other, table hashes wider than the line address),
    tables of 1 entry, 16-bit entries and history 4."""
    ways = int(rng.choice([1, 2, 8, 16, 32, 64] if policy == "plru"
                          else [1, 3, 5, 8, 12, 16, 33, 64]))
    sets = int(rng.choice([1, 2, 16, 256, 1024]))
    line_bytes = int(rng.choice([8, 64, 256, 4096]))
    least = sets.bit_length() - 1 + line_bytes.bit_length() - 1 + 1  # one tag bit
    addr_bits = int(rng.choice([max(8, least), max(8, least + 1), max(8, least + 3), 32, 64]))
    config: dict[str, Any] = {
        "sets": sets, "ways": ways, "line_bytes": line_bytes, "addr_bits": addr_bits,
        "policy": policy, "seed": int(rng.integers(1, 65536)), "accesses": ACCESSES["full"],
        "gaps": bool(rng.random() < 0.5),
    }
    if policy == "table":
        config["table_geometry"] = {"entries": int(rng.choice([1, 16, 2048, 1 << 16])),
                                    "entry_bits": int(rng.choice([3, 8, 16])),
                                    "history": int(rng.integers(0, 5))}
    return config


def sample_configs(rng: np.random.Generator, level: str) -> list[dict[str, Any]]:
    """``COUNT[level]`` configs covering every RTL policy in turn, then random ones."""
    policies = list(RTL_POLICIES)
    out = []
    for i in range(COUNT[level]):
        policy = policies[i] if i < len(policies) else str(rng.choice(policies))
        out.append(_cache_sample(rng, level, policy))
    return out


def cache_config(config: dict[str, Any], workdir: Path, seed: int) -> CacheConfig:
    table = None
    if config["policy"] == "table":
        geo = config["table_geometry"]
        rng = np.random.default_rng(seed)
        table = workdir / "replacement.npz"
        save_table(table, make_table(kind="replacement", entry_bits=geo["entry_bits"],
                                     history=geo["history"],
                                     values=rng.integers(0, 1 << geo["entry_bits"],
                                                         geo["entries"])))
    keys = ("sets", "ways", "line_bytes", "addr_bits", "policy", "seed")
    return CacheConfig(**{k: config[k] for k in keys}, table=table)


def check_geometry_of(config: dict[str, Any], kind: str, owner: str) -> None:
    """``config["table_geometry"]`` for a table of ``kind`` needed by ``owner`` ("policy
    'table'"): a ParameterError if it is missing or illegal."""
    geo = config.get("table_geometry")
    names = ("entries", "entry_bits", "history")
    if not isinstance(geo, dict) or any(name not in geo for name in names):
        raise ParameterError(f"{owner} needs table_geometry {{{', '.join(names)}}}")
    problem = check_geometry(kind, *(geo[name] for name in names))
    if problem:
        raise ParameterError(f"table_geometry: {problem}")


def check_config(config: dict[str, Any]) -> None:
    """Raise the generator's own error for a config it cannot run (a hand-written
    ``--config``): bad cache parameters, access count or table geometry."""
    accesses = config["accesses"]
    if isinstance(accesses, bool) or not isinstance(accesses, int) or accesses < 1:
        raise ParameterError(f"accesses must be a positive integer, not {accesses!r}")
    if config["policy"] == "table":
        check_geometry_of(config, "replacement", "policy 'table'")
    keys = ("sets", "ways", "line_bytes", "addr_bits", "policy", "seed")
    # the table file is made by the run: a stand-in name for the check
    CacheConfig(**{k: config[k] for k in keys},
                table="table.npz" if config["policy"] == "table" else None)
    if config["policy"] not in RTL_POLICIES:
        raise ParameterError(f"policy {config['policy']!r} (Belady) exists only in the model, "
                             f"not in RTL")


def run_case(config: dict[str, Any], prefetch: PrefetcherConfig | None, *, seed: int,
             waves: bool, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    cache = cache_config(config, workdir, seed)
    n = int(config["accesses"])
    trace = adversarial(n, seed=seed, sets=cache.sets, line_bytes=cache.line_bytes)
    idle = gaps(n, seed=seed) if config.get("gaps") else None
    model, rtl, diff = check(cache, trace, prefetch=prefetch, gaps=idle,
                             workdir=workdir / "sim", waves=waves)
    detail = (f"bit-exact on {n} accesses (hit rate {model.hit_rate:.3f}, "
              f"{model.evictions} evictions, {model.writebacks} writebacks"
              + (f", {model.prefetch_issued} prefetches" if prefetch else "") + ")"
              if diff is None else f"seed={seed}: RTL differs from model: {diff}")
    fst = workdir / "sim" / "dump.fst"
    return {"passed": diff is None, "detail": detail, "cycles": rtl.cycles or None,
            "waves": str(fst) if waves and fst.exists() else None}


def run_config(config: dict[str, Any], *, seed: int, waves: bool,
               workdir: Path) -> dict[str, Any]:
    return run_case(config, None, seed=seed, waves=waves, workdir=Path(workdir))
