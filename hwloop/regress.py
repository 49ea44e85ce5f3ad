"""``hwloop regress``: randomized regression matrices of every generator, run in parallel.

A generator takes part by providing a module with

- ``sample_configs(rng: numpy.random.Generator, level: str) -> list[dict]`` (level ``"quick"``
  or ``"full"``; each config JSON-able), and
- ``run_config(config, *, seed, waves, workdir) -> dict`` returning at least ``{"passed": bool,
  "detail": str}`` and optionally ``cycles``, ``model_cycles``, ``waves`` (an FST path);
- optionally ``check_config(config)``, raising the generator's error for a config it cannot
  run: a hand-written ``--config`` with bad values is then bad input (exit 2), not a failure.

:data:`REGISTRY` maps generator names to those modules. A module that does not import (yet) is
skipped with a note. Each config runs with its own seed, derived from the matrix seed and its
index and printed with any failure, so a failure reproduces with
``hwloop regress --generator NAME --config 'JSON' --seed SEED``.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwloop.errors import HwloopError, ParameterError, check_seed
from hwloop.paths import check_folder_path, keep_scratch, remove_scratch, scratch_dir

REGISTRY: dict[str, str] = {
    "systolic": "hwloop.sim.systolic.regress",
    "cache": "hwloop.sim.cache.regress",
    "prefetcher": "hwloop.sim.cache.regress_prefetch",
}

LEVELS = ("quick", "full")


@dataclass
class CaseResult:
    generator: str
    index: int
    config: dict[str, Any]
    seed: int
    passed: bool
    detail: str
    cycles: int | None = None
    model_cycles: int | None = None
    waves: str | None = None
    workdir: str | None = None  # its files; None if removed (it passed in a scratch folder)
    wall_s: float = 0.0


@dataclass
class RegressReport:
    results: list[CaseResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # generator → why

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


def config_seed(seed: int, index: int) -> int:
    """The seed of config ``index`` of a matrix drawn with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] & 0x7FFFFFFF)


def load_generator(name: str) -> Any:
    """The regression module of generator ``name`` (ImportError if it does not import)."""
    if name not in REGISTRY:
        raise ParameterError(f"unknown generator {name!r} (known: {', '.join(REGISTRY)})")
    module = importlib.import_module(REGISTRY[name])
    for attr in ("sample_configs", "run_config"):
        if not callable(getattr(module, attr, None)):
            raise ImportError(f"{REGISTRY[name]} has no {attr}()")
    return module


def _check_config(name: str, module: Any, config: dict[str, Any]) -> None:
    """A ``--config`` sets every top-level key that the generator's own configs all set (as a
    failing run prints them)."""
    drawn = list(module.sample_configs(np.random.default_rng(0), "full"))
    if not drawn:
        return
    missing = sorted(set.intersection(*({k for k, v in c.items() if v is not None}
                                         for c in drawn)) - set(config))
    if missing:
        unknown = sorted(set(config) - set().union(*drawn))
        raise ParameterError(
            f"--config for {name}: missing {', '.join(missing)}"
            + (f"; not its keys: {', '.join(unknown)}" if unknown else "")
            + " (give a configuration as a failing run prints it)")
    for key, value in config.items():  # a table where the generator reads one (config["params"])
        drawn_values = [c[key] for c in drawn if c.get(key) is not None]
        if drawn_values and all(isinstance(v, dict) for v in drawn_values) \
                and not isinstance(value, dict) and not (value is None and len(drawn_values)
                                                         < sum(key in c for c in drawn)):
            raise ParameterError(f"--config for {name}: {key} must be a JSON object, "
                                 f"not {value!r}")
    check = getattr(module, "check_config", None)
    if check is not None:  # values the generator rejects are bad input, not a failed run
        try:
            check(config)
        except HwloopError as exc:
            raise ParameterError(f"--config for {name}: {exc}") from None


class CaseTimeout(Exception):
    """A configuration ran past ``--timeout`` (raised in its worker by a timer signal)."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout


def _run_case(module_name: str, config: dict[str, Any], seed: int, waves: bool,
              workdir: str | None, kind: str, timeout: float | None = None) -> dict[str, Any]:
    """Run one config in a worker process; any exception is a failure with its message.

    Without ``workdir`` the config works in a scratch folder ``hwloop-<kind>-*``, removed
    when it passes without waves (a quick matrix would leave hundreds of MB a run) and kept
    for a failure or for ``waves``; ``out["workdir"]`` names a folder that is kept.
    ``timeout`` (seconds): a timer signal stops the config there, as a failure; a simulator
    or build it waits for is killed on the way out (``subprocess.run`` kills its child when
    interrupted)."""
    start = time.perf_counter()
    folder = Path(workdir) if workdir is not None else scratch_dir(kind)
    if timeout is not None:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        try:
            module = importlib.import_module(module_name)
            folder.mkdir(parents=True, exist_ok=True)
            out = dict(module.run_config(config, seed=seed, waves=waves, workdir=folder))
        finally:
            if timeout is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
        out.setdefault("detail", "")
        out["passed"] = bool(out.get("passed"))
    except CaseTimeout:
        out = {"passed": False, "detail": f"timed out after {timeout:g} s (--timeout)"}
    except Exception as exc:  # noqa: BLE001 — a crash is a failed case, not a crashed matrix
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        out = {"passed": False, "detail": last.splitlines()[0] if last else repr(exc)}
    except BaseException:
        if workdir is None:
            remove_scratch(folder)
        raise
    if workdir is None and out["passed"] and not waves:
        remove_scratch(folder)
    else:
        if workdir is None:
            keep_scratch(folder)
        out["workdir"] = str(folder)
    out["wall_s"] = time.perf_counter() - start
    return out


def _check_workdir(workdir: Path) -> Path:
    """``workdir`` made absolute (the simulators run in folders of their own and find their
    job files by the paths they are given); a ParameterError if it or a folder above it is
    not a folder, which would otherwise fail every configuration as if the generator had."""
    check_folder_path(workdir, name=f"--workdir {workdir}", error=ParameterError)
    return workdir.resolve()


def run_regress(*, level: str = "quick", generators: list[str] | None = None, seed: int = 0,
                waves: bool = False, jobs: int = 2, max_configs: int | None = None,
                config: dict[str, Any] | None = None, workdir: Path | None = None,
                timeout: float | None = None, progress: Any = None) -> RegressReport:
    """Draw each generator's matrix, run every config in a process pool, collect the results;
    ``timeout``: seconds a config may take (its build included) before it fails."""
    if level not in LEVELS:
        raise ParameterError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    if jobs < 1:
        raise ParameterError(f"jobs must be a positive integer, not {jobs}")
    if max_configs is not None and max_configs < 1:
        raise ParameterError(f"max-configs must be a positive integer, not {max_configs}")
    if timeout is not None and not 0 < timeout < 1e9:  # NaN too; setitimer takes < 1e9 s
        raise ParameterError(f"timeout must be a positive number of seconds, not {timeout:g}")
    check_seed(seed)
    root = None if workdir is None else _check_workdir(Path(workdir))
    names = list(generators) if generators else list(REGISTRY)
    if config is not None and len(names) != 1:
        raise ParameterError("--config needs exactly one --generator")
    if config is not None and max_configs is not None:
        raise ParameterError("--max-configs has no effect with --config (it runs that one "
                             "configuration)")
    report = RegressReport()
    cases: list[tuple[str, str, int, dict[str, Any], int]] = []
    for name in names:
        try:
            module = load_generator(name)
        except ImportError as exc:
            report.skipped[name] = f"{REGISTRY[name]} does not import: {exc}".splitlines()[0]
            continue
        if config is not None:
            _check_config(name, module, config)
            configs = [config]
            seeds = [seed]
        else:
            configs = list(module.sample_configs(np.random.default_rng(seed), level))
            if max_configs is not None:
                configs = configs[:max_configs]
            seeds = [config_seed(seed, i) for i in range(len(configs))]
        for index, (cfg, case_seed) in enumerate(zip(configs, seeds, strict=True)):
            cases.append((name, REGISTRY[name], index, cfg, case_seed))
    if not cases:
        return report
    if root is not None:  # made here, after every check, rather than failing every config
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ParameterError(f"--workdir {workdir}: cannot create the folder: "
                                 f"{exc.strerror or exc}") from None
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(cases))) as pool:
        futures = {
            pool.submit(_run_case, module_name, cfg, case_seed, waves,
                        None if root is None else str(root / f"{name}-{index:03d}"),
                        f"regress-{name}-{index:03d}", timeout): (name, index, cfg, case_seed)
            for name, module_name, index, cfg, case_seed in cases
        }
        try:
            for future in concurrent.futures.as_completed(futures):
                name, index, cfg, case_seed = futures[future]
                try:
                    out = future.result()
                except Exception as exc:  # noqa: BLE001 — e.g. a worker killed by the OS
                    out = {"passed": False, "detail": f"worker died: {exc}", "wall_s": 0.0}
                result = CaseResult(
                    generator=name, index=index, config=cfg, seed=case_seed,
                    passed=out["passed"], detail=str(out.get("detail", "")),
                    cycles=out.get("cycles"), model_cycles=out.get("model_cycles"),
                    waves=out.get("waves"), workdir=out.get("workdir"),
                    wall_s=float(out.get("wall_s", 0.0)))
                report.results.append(result)
                if progress is not None:
                    progress(result)
        except BaseException:  # Ctrl-C: the configurations not started yet are not run
            pool.shutdown(cancel_futures=True)  # waits for the running ones
            raise
    report.results.sort(key=lambda r: (names.index(r.generator), r.index))
    return report


def describe(config: dict[str, Any], limit: int = 60) -> str:
    """A short one-line summary of a config for the table."""
    text = json.dumps(config, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"
