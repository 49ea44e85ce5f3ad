"""The sweep driver: the ask/tell loop between a search method and the evaluation engine.

It keeps the engine busy (asks for as many points as there are free workers), records each
result in the results DB in its own committed transaction the moment it arrives, and tells the
optimizer. A configuration already in the DB at this fidelity is not evaluated again: its row
is reused (a failed or timed-out one is evaluated again with ``retry_failed=True``).
``resume=True`` continues the latest sweep with the same method, seed and fidelity:
the optimizer is re-told that sweep's rows in their order and the budget counts them, so a
driver killed at any moment (even ``kill -9``) loses at most the evaluations that were still
running and repeats none that finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwloop.errors import InputError, ParameterError, check_seed
from hwloop.paths import byte_lock_holder, try_lock_byte
from hwloop.search.db import RETRIED_STATUSES, ResultsDB, Row, Sweep, params_hash
from hwloop.search.engine import DaskEngine, LocalEngine, Outcome, make_engine
from hwloop.search.objective import PointResult, rescore
from hwloop.search.space import Space

FIDELITIES = ("rtl", "model")

#: Test hook: ``module:function`` of an evaluator to use instead of ``evaluate_point`` (same
#: signature). Lets tests inject slow, failing or hanging evaluations into a real CLI sweep.
EVALUATOR_ENV = "HWLOOP_SWEEP_EVALUATOR"

_RESULT_FIELDS = {f.name for f in dataclasses.fields(PointResult)}


@dataclass
class SweepSummary:
    db_path: Path
    sweep: Sweep
    told: int = 0  # rows told to this sweep in total (its budget when it completes)
    resumed: int = 0  # rows re-told from an earlier run of this sweep
    evaluated: int = 0  # evaluations run now
    reused: int = 0  # configurations found in the DB and not run again
    # statuses of every told row (resumed, reused, evaluated): they add up to ``told``
    feasible: int = 0
    infeasible: int = 0
    failed: int = 0
    timeouts: int = 0
    exhausted: bool = False  # the method ran out of new points before the budget
    wall_s: float = 0.0
    best: Row | None = None
    rows: list[Row] = field(default_factory=list, repr=False)


def evaluator_from_env() -> Callable[..., Any]:
    spec = os.environ.get(EVALUATOR_ENV)
    if not spec:
        from hwloop.search.objective import evaluate_point

        return evaluate_point
    module_name, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"{EVALUATOR_ENV}={spec}: cannot load the evaluator ({exc})") from None


def to_point_result(data: dict[str, Any]) -> PointResult:
    """A PointResult from a stored or returned dict (unknown keys go to ``extra``)."""
    known = {k: v for k, v in data.items() if k in _RESULT_FIELDS}
    extra = dict(known.get("extra") or {})
    extra.update({k: v for k, v in data.items() if k not in _RESULT_FIELDS})
    known["extra"] = extra
    known.setdefault("point", {})
    known.setdefault("status", "failed")
    return PointResult(**known)


def outcome_result(outcome: Outcome, *, fidelity: str, seed: int) -> dict[str, Any]:
    """The result dict to store and tell for one engine outcome."""
    if outcome.status == "done" and outcome.result is not None:
        result = dict(outcome.result)
        result.setdefault("point", outcome.point)
        if result.get("status") not in ("ok", "infeasible", "failed", "timeout"):
            result = {"point": outcome.point, "status": "failed", "fidelity": fidelity,
                      "seed": seed, "error": f"evaluator returned status {result.get('status')!r}"}
        return result
    return {
        "point": outcome.point, "status": outcome.status, "feasible": False, "objective": None,
        "metrics": {}, "error": outcome.error, "fidelity": fidelity, "seed": seed,
        "wall_s": outcome.wall_s, "extra": {"log_path": outcome.log_path},
    }


def load_warm_start(path: str | Path, space: Space, *, fidelity: str | None = None
                    ) -> list[tuple[dict[str, Any], PointResult]]:
    """(point, result) pairs of another sweep's DB that are points of ``space``, rescored
    under this space's objective and budgets. A point the DB holds at several fidelities
    counts once, at ``fidelity`` (the warm-started sweep's) if it has it, else at the first
    of :data:`FIDELITIES` it has: the optimizers would otherwise see it as two observations."""
    chosen: dict[str, tuple[int, dict[str, Any], PointResult]] = {}
    with ResultsDB.open_existing(path) as other:
        for row in other.rows():
            try:
                point = space.normalize(row.params)
            except ParameterError:
                continue  # not a point of this space
            result = to_point_result(row.result)
            try:
                result = rescore(space, result)
            except KeyError:  # the other sweep did not measure a metric this space budgets
                continue
            rank = (-1 if row.fidelity == fidelity else FIDELITIES.index(row.fidelity)
                    if row.fidelity in FIDELITIES else len(FIDELITIES))
            key = params_hash(point)
            if key not in chosen or rank < chosen[key][0]:
                chosen[key] = (rank, point, result)
    pairs = [(point, result) for _, point, result in chosen.values()]
    if not pairs:
        raise InputError(f"--warm-start {path}: no evaluations of points of space "
                         f"{space.name!r} in it")
    return pairs


def check_options(*, budget: int, workers: int | None, timeout: float | None,
                  fidelity: str | None, seed: int = 0, scheduler: str | None = None,
                  log_dir: Path | None = None) -> None:
    check_seed(seed, name="--seed")
    if seed >= 2**63:
        raise ParameterError(f"--seed must be below 2**63 (the results DB keeps it as a 64-bit "
                             f"integer), not {seed}")
    # Dask runs the evaluations on the cluster's own workers: these options would be ignored.
    if scheduler is not None and workers is not None:
        raise ParameterError("--workers has no effect with --scheduler (the cluster's workers "
                             "run the evaluations)")
    if scheduler is not None and log_dir is not None:
        raise ParameterError("--log-dir has no effect with --scheduler (the cluster's workers "
                             "write their own logs)")
    if budget < 1:
        raise ParameterError(f"--budget must be at least 1, not {budget}")
    if workers is not None and workers < 1:
        raise ParameterError(f"--workers must be at least 1, not {workers}")
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise ParameterError(f"--timeout must be a positive number of seconds, not {timeout}")
    if fidelity is not None and fidelity not in FIDELITIES:
        raise ParameterError(f"--fidelity must be one of {', '.join(FIDELITIES)}, not "
                             f"{fidelity!r}")


def run_sweep(
    space: Space,
    *,
    method: str,
    budget: int,
    db_path: str | Path,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    warm_start: str | Path | None = None,
    fidelity: str | None = None,
    seed: int = 0,
    timeout: float | None = None,
    evaluator: Callable[..., Any] | None = None,
    on_result: Callable[[SweepSummary, Row], None] | None = None,
    on_start: Callable[[SweepSummary], None] | None = None,
    log_dir: Path | None = None,
    retry_failed: bool = False,
) -> SweepSummary:
    """Run (or resume) one sweep; returns what it did. Bad input raises before any write."""
    from hwloop.search.methods.base import METHODS, WARM_STARTED, make_optimizer

    started = time.time()
    check_options(budget=budget, workers=workers, timeout=timeout, fidelity=fidelity,
                  seed=seed, scheduler=scheduler, log_dir=log_dir)
    fidelity = fidelity or space.fidelity
    db_path = Path(db_path)
    evaluator = evaluator or evaluator_from_env()
    if warm_start is not None and method in METHODS and method not in WARM_STARTED:
        raise ParameterError(f"--warm-start has no effect with --method {method} (only "
                             f"{' and '.join(WARM_STARTED)} use it)")
    # Only a method that uses the warm start needs it again on resume.
    if resume and warm_start is None and method in WARM_STARTED and db_path.exists():
        warm_start = _earlier_warm_start(db_path, method=method, seed=seed, fidelity=fidelity)
    pairs = load_warm_start(warm_start, space, fidelity=fidelity) if warm_start else None
    optimizer = make_optimizer(method, space, seed=seed, warm_start=pairs)
    if resume and not db_path.exists():
        raise InputError(f"--resume: {db_path} does not exist")
    engine: LocalEngine | DaskEngine = make_engine(
        evaluator=evaluator, space=space, fidelity=fidelity, seed=seed, workers=workers,
        scheduler=scheduler, timeout=timeout, log_dir=log_dir)
    try:
        db = ResultsDB.open(db_path, space_name=space.name, space_hash=space.hash,
                            objective=space.objective, prices=prices())
    except BaseException:
        engine.close()
        raise
    with engine, db, contextlib.ExitStack() as held:
        sweep = None
        if resume:
            sweep = db.find_sweep(method=method, seed=seed, fidelity=fidelity)
            if sweep is None:
                raise InputError(f"--resume: {db_path} has no {method} sweep with seed {seed} "
                                 f"at fidelity {fidelity}")
            held.callback(_hold(db_path, sweep))
            done = len(db.trials(sweep))
            if budget < done:
                raise InputError(f"--budget {budget} is below the {done} results this sweep "
                                 f"already has")
            sweep = db.set_budget(sweep, budget)
        else:
            options = {"workers": workers, "scheduler": scheduler, "timeout": timeout,
                       "warm_start": str(Path(warm_start).resolve()) if warm_start else ""}
            sweep = db.new_sweep(method=method, seed=seed, fidelity=fidelity, budget=budget,
                                 options=options)
            held.callback(_hold(db_path, sweep))
        summary = SweepSummary(db_path=db_path, sweep=sweep)
        earlier = db.trials(sweep)
        if earlier:
            optimizer.tell([space.normalize(r.params) for r in earlier],
                           [to_point_result(r.result) for r in earlier])
        summary.resumed = len(earlier)
        summary.rows = list(earlier)
        _count(summary, earlier)
        try:
            if on_start is not None:
                on_start(summary)
            _loop(space, optimizer, engine, db, sweep, summary, budget=budget, seed=seed,
                  method=method, on_result=on_result, retry_failed=retry_failed)
        except BaseException:
            if not resume and not summary.told:
                db.delete_sweep(sweep)  # failed before any result: leave no empty sweep behind
            raise
        summary.best = _best(summary.rows)
    summary.wall_s = time.time() - started
    return summary


def prices() -> str:
    """What evaluations price designs with: a hash of the area and energy tables (a DB made
    with other tables refuses this sweep, so old and new prices never mix in one DB)."""
    from hwloop.sim import area, energy

    digest = hashlib.sha256()
    for table in (area.DEFAULT_TABLE, energy.DEFAULT_TABLE):
        digest.update(table.read_bytes())
    return digest.hexdigest()[:16]


def _hold(db_path: Path, sweep: Sweep) -> Callable[[], None]:
    """Make this process the only one running ``sweep`` (two resumes of one sweep at once
    would evaluate the same points twice): a function that releases it, or an InputError.

    The lock is byte ``sweep.id`` of ``<db>.lock`` beside the database, not in the cache:
    drivers with different ``HWLOOP_CACHE`` (two users, a container and its host, two
    machines sharing the folder) must see each other."""
    lock_path = db_path.with_name(db_path.name + ".lock")
    release = try_lock_byte(lock_path, sweep.id)
    if release is None:
        pid = byte_lock_holder(lock_path, sweep.id)
        who = f"another process (pid {pid})" if pid is not None else "another process"
        raise InputError(f"sweep {sweep.id} of {db_path} is running in {who}: let it finish, "
                         "or stop it and resume")
    return release


def _earlier_warm_start(db_path: Path, *, method: str, seed: int,
                        fidelity: str) -> str | None:
    """The ``--warm-start`` the sweep being resumed was started with (it is applied again)."""
    with ResultsDB.open_existing(db_path) as db:
        sweep = db.find_sweep(method=method, seed=seed, fidelity=fidelity)
        path = db.sweep_options(sweep).get("warm_start") if sweep is not None else None
    if not path:
        return None
    if not Path(path).exists():
        raise InputError(f"--resume: this sweep was warm-started from {path}, which is gone; "
                         f"pass --warm-start")
    return str(path)


def _count(summary: SweepSummary, rows: list[Row]) -> None:
    for row in rows:
        summary.told += 1
        if row.status == "failed":
            summary.failed += 1
        elif row.status == "timeout":
            summary.timeouts += 1
        elif row.feasible and row.status == "ok":
            summary.feasible += 1
        else:
            summary.infeasible += 1


def _best(rows: list[Row]) -> Row | None:
    feasible = [r for r in rows if r.feasible and r.status == "ok" and r.objective is not None]
    return min(feasible, key=lambda r: (r.objective, r.id)) if feasible else None


def _loop(space: Space, optimizer: Any, engine: LocalEngine | DaskEngine, db: ResultsDB,
          sweep: Sweep, summary: SweepSummary, *, budget: int, seed: int, method: str,
          on_result: Callable[[SweepSummary, Row], None] | None,
          retry_failed: bool) -> None:
    from hwloop.toolchain import tool_versions

    versions = tool_versions()
    inflight: dict[str, dict[str, Any]] = {}
    capacity = engine.capacity
    checked = time.time()

    def told(point: dict[str, Any], row: Row) -> None:
        optimizer.tell([point], [to_point_result(row.result)])
        summary.rows.append(row)
        _count(summary, [row])
        if on_result is not None:
            on_result(summary, row)

    while summary.told < budget:
        if time.time() - checked > 10:  # Dask workers may join or leave during a sweep
            capacity, checked = engine.capacity, time.time()
        want = min(capacity - len(inflight), budget - summary.told - len(inflight))
        if want > 0:
            points = optimizer.ask(want)
            if not points and not inflight:
                summary.exhausted = True
                return
            reused_any = False
            for raw in points:
                point = space.normalize(raw)
                key = params_hash(point)
                row = db.lookup(key, sweep.fidelity)
                if row is not None and retry_failed and row.status in RETRIED_STATUSES:
                    row = None  # evaluated again; db.record replaces the row
                if row is not None:
                    db.reuse(sweep, row)
                    summary.reused += 1
                    reused_any = True
                    told(point, row)
                elif key not in inflight:
                    inflight[key] = point
                    engine.submit(key, point)
            if reused_any:
                continue  # ask again for the workers those reused points left free
        for outcome in engine.poll(wait=0.5):
            point = inflight.pop(outcome.key, outcome.point)
            result = outcome_result(outcome, fidelity=sweep.fidelity, seed=seed)
            extra = result.get("extra") or {}
            row = db.record(
                sweep, point=point, result=result, method=method, seed=seed,
                error=result.get("error"),
                log_path=outcome.log_path or extra.get("log_path"),
                wall_s=outcome.wall_s, queued_s=outcome.queued_s,
                started_at=outcome.started_at or None,
                tool_versions=extra.get("tool_versions") or versions,
            )
            summary.evaluated += 1
            told(point, row)
