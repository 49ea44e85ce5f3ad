"""GP Bayesian optimization with scikit-optimize, budgets as a penalty: the naive baseline.

scikit-optimize has no constraints (its issue #355), so an infeasible point is told a value
worse than every feasible one (see :func:`penalized_value`): the GP then has to learn the
budget boundary as a cliff in the objective, which it models badly.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from threadpoolctl import threadpool_limits

from hwloop.search.methods.base import Optimizer, WarmStart, penalized_value
from hwloop.search.objective import PointResult
from hwloop.search.space import Point, Space


class SkoptBO(Optimizer):
    name = "bo"

    def __init__(self, space: Space, *, seed: int = 0, warm_start: WarmStart | None = None,
                 n_initial_points: int = 8, acq_func: str = "EI") -> None:
        super().__init__(space, seed=seed, warm_start=warm_start)
        from skopt import Optimizer as SkOptimizer
        from skopt.space import Categorical, Integer

        self._dims = space.free_dims
        # categorical values by their labels (below)
        self._by_label = {d.name: {str(v): v for v in d.values}
                          for d in self._dims if d.kind != "ordinal"}
        dimensions: list[Any] = []
        for d in self._dims:
            if d.kind == "ordinal":
                dimensions.append(Integer(0, len(d.values) - 1, name=d.name))
            else:
                # Labels, not the values: skopt hands categories back as numpy strings, so a
                # boolean would come back as 'True'; _from_x maps a label back to its value.
                dimensions.append(Categorical(list(self._by_label[d.name]), name=d.name))
        from skopt.space import Space as SkSpace
        from skopt.utils import cook_estimator

        # skopt's default GP, with one hyperparameter fit per refit instead of three (its
        # restarts dominated the run time) and 2000 acquisition samples instead of 10000.
        estimator = cook_estimator("GP", space=SkSpace(dimensions), random_state=seed,
                                   n_restarts_optimizer=0)
        self._sk = SkOptimizer(dimensions, base_estimator=estimator, acq_func=acq_func,
                               acq_optimizer="sampling", n_initial_points=n_initial_points,
                               random_state=seed, acq_optimizer_kwargs={"n_points": 2000})
        self._worst: float | None = None
        # Told, not yet given to skopt (static-infeasible ones wait for a measured value to
        # put their penalty above).
        self._unsent: list[tuple[list[Any], PointResult]] = []

    def _to_x(self, point: Point) -> list[Any]:
        return [d.index(point[d.name]) if d.kind == "ordinal" else str(point[d.name])
                for d in self._dims]

    def _from_x(self, x: list[Any]) -> Point:
        point = {d.name: d.values[0] for d in self.space.dims if d.fixed}
        for d, v in zip(self._dims, x, strict=True):
            point[d.name] = (d.values[int(v)] if d.kind == "ordinal"
                             else self._by_label[d.name][str(v)])
        return {d.name: point[d.name] for d in self.space.dims}

    def _propose(self, n: int) -> list[Point]:
        if not self._dims:
            return []
        # One BLAS thread: the GP's matrices are small, and on a shared machine the threads of
        # a multi-threaded BLAS mostly spin (5x slower here).
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore")
            self._flush()
            sk = self._sk
            if self.pending:
                # Points still being evaluated: lie that they scored the best value so far
                # (constant liar), so the model looks elsewhere.
                lie = min(sk.yi) if sk.yi else 0.0
                sk = sk.copy(random_state=int(self.rng.integers(2**31)))
                sk.tell([self._to_x(p) for p in self.pending.values()],
                        [lie] * len(self.pending))
            xs = sk.ask(n_points=n, strategy="cl_min") if n > 1 else [sk.ask()]
        return [self._from_x(x) for x in xs]

    def _observe(self, point: Point, result: PointResult) -> None:
        if not self._dims:
            return
        if result.objective is not None and result.objective > 0:
            value = math.log(result.objective)
            if self._worst is None or value > self._worst:
                self._worst = value
        self._unsent.append((self._to_x(point), result))

    def _flush(self) -> None:
        """Tell skopt the results so far, in one refit."""
        if self._worst is None:
            return  # nothing measured yet: no scale for a penalty
        xs = [x for x, _ in self._unsent]
        ys = [penalized_value(r, self._worst) for _, r in self._unsent]
        self._unsent = []
        if xs:
            self._sk.tell(xs, ys)
