"""Optuna's TPE sampler with constraints (``Trial.set_constraint``, the successor of
``constraints_func`` in Optuna 5): an outside baseline, through Optuna's ask/tell interface.

Ordinal dimensions are integer indices (a log range is then linear in log2), categorical ones
categorical. The constraint of a trial is the largest relative budget excess (<= 0 feasible);
a statically infeasible point has no metrics and is told a penalty value with constraint 1.
Pending trials stay RUNNING, and ``constant_liar`` keeps TPE away from them.
"""

from __future__ import annotations

import math
from typing import Any

from hwloop.search.methods.base import Optimizer, WarmStart, penalized_value
from hwloop.search.objective import PointResult
from hwloop.search.space import Point, Space


class OptunaTPE(Optimizer):
    name = "optuna-tpe"

    def __init__(self, space: Space, *, seed: int = 0, warm_start: WarmStart | None = None,
                 n_startup_trials: int = 8) -> None:
        super().__init__(space, seed=seed, warm_start=warm_start)
        import optuna
        from optuna.distributions import CategoricalDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                             constant_liar=True, multivariate=True)
        self._study = optuna.create_study(direction="minimize", sampler=sampler)
        self._dist: dict[str, Any] = {}
        for d in space.free_dims:
            if d.kind == "ordinal":
                self._dist[d.name] = IntDistribution(0, len(d.values) - 1)
            else:
                self._dist[d.name] = CategoricalDistribution(list(d.values))
        self._trials: dict[tuple[Any, ...], Any] = {}  # pending point key -> trial
        self._worst: float | None = None
        self._waiting: list[tuple[Any, PointResult]] = []  # static results before any scale

    def _point(self, params: dict[str, Any]) -> Point:
        point: Point = {}
        for d in self.space.dims:
            if d.fixed:
                point[d.name] = d.values[0]
            elif d.kind == "ordinal":
                point[d.name] = d.values[int(params[d.name])]
            else:
                point[d.name] = params[d.name]
        return point

    def _propose(self, n: int) -> list[Point]:
        out: list[Point] = []
        keys: set[tuple[Any, ...]] = set()
        retries = 0
        while len(out) < n and retries < 20 * n:
            trial = self._study.ask(self._dist)
            point = self._point(trial.params)
            key = self.space.key(point)
            if key in self.told and self.told[key].objective is not None:
                # TPE repeated a measured point: tell it again (free) and ask anew.
                self._finish(trial, self.told[key])
                retries += 1
                continue
            if key in keys or not self._is_new(point):
                self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
                retries += 1
                continue
            keys.add(key)
            self._trials[key] = trial
            out.append(point)
        return out

    def ask(self, n: int = 1) -> list[Point]:
        points = super().ask(n)
        # Points the base class filled in at random: enqueue them as fixed trials so TPE
        # knows them when they are told.
        for point in points:
            key = self.space.key(point)
            if key not in self._trials:
                params = {d.name: d.index(point[d.name]) if d.kind == "ordinal"
                          else point[d.name] for d in self.space.free_dims}
                self._study.enqueue_trial(params)
                trial = self._study.ask(self._dist)
                self._trials[key] = trial
        return points

    def _finish(self, trial: Any, result: PointResult) -> None:
        if result.violations:
            constraint = max(v - 1.0 for v in result.violations.values())
        else:
            constraint = 0.0 if result.feasible else 1.0
        trial.set_constraint("budgets", constraint)
        if result.objective is not None and result.objective > 0:
            value = math.log(result.objective)
        else:
            value = penalized_value(result, self._worst if self._worst is not None else 0.0)
        self._study.tell(trial, value)

    def _observe(self, point: Point, result: PointResult) -> None:
        key = self.space.key(point)
        trial = self._trials.pop(key, None)
        if result.objective is not None and result.objective > 0:
            value = math.log(result.objective)
            self._worst = value if self._worst is None else max(self._worst, value)
        if trial is None:  # told without being asked (e.g. a resumed sweep)
            params = {d.name: d.index(point[d.name]) if d.kind == "ordinal" else point[d.name]
                      for d in self.space.free_dims}
            self._study.enqueue_trial(params)
            trial = self._study.ask(self._dist)
        if result.objective is None and self._worst is None:
            self._waiting.append((trial, result))
            return
        self._finish(trial, result)
        for waiting, waiting_result in self._waiting:
            self._finish(waiting, waiting_result)
        self._waiting = []
