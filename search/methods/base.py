"""The ask/tell protocol every search method follows, and the factory that makes them.

An optimizer proposes points with :meth:`Optimizer.ask` and learns from their results with
:meth:`Optimizer.tell`. Asks may overlap: a driver asks for k points while others are still
being evaluated (*pending*). An optimizer never proposes a point that is pending or already
told. When a space is exhausted, ``ask`` returns fewer points (possibly none).

Every method is deterministic given its seed and the sequence of asks and tells.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hwloop.errors import ParameterError, check_seed
from hwloop.search.objective import PointResult
from hwloop.search.space import Point, Space

#: method name -> "module:class" (modules under hwloop.search.methods)
METHODS = {
    "random": "random_search:RandomSearch",
    "bo": "bo:SkoptBO",
    "cbo": "cbo:ConstrainedBO",
    "apollo": "apollo:Apollo",
    "optuna-tpe": "optuna_tpe:OptunaTPE",
}
# The methods that use a warm start (the others ignore it: giving them one is an error).
WARM_STARTED = ("cbo", "apollo")

WarmStart = Sequence[tuple[Point, PointResult]]


class Optimizer:
    """Base class: bookkeeping of pending and told points, dedupe, random fill-in.

    Subclasses implement :meth:`_propose` (up to n candidate points; may repeat or return
    fewer) and may extend :meth:`_observe` (called once per told result).
    """

    name = "base"

    def __init__(self, space: Space, *, seed: int = 0,
                 warm_start: WarmStart | None = None) -> None:
        check_seed(seed)
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.pending: dict[tuple[Any, ...], Point] = {}
        self.told: dict[tuple[Any, ...], PointResult] = {}
        self.history: list[tuple[Point, PointResult]] = []
        # Results of another sweep; points outside this space (other dimensions or values)
        # cannot inform it and are left out.
        self.warm_start: list[tuple[Point, PointResult]] = []
        for point, result in warm_start or []:
            try:
                self.warm_start.append((space.normalize(point), result))
            except ParameterError:
                continue

    # -- public API ----------------------------------------------------------------------------

    def ask(self, n: int = 1) -> list[Point]:
        if n < 1:
            raise ParameterError(f"ask needs n >= 1, not {n}")
        out: list[Point] = []
        proposed = self._propose(n)
        for point in proposed:
            if len(out) == n:
                break
            point = self.space.normalize(point)
            if self._is_new(point):
                self._mark_pending(point)
                out.append(point)
        # Fill with random unseen points (a model repeated itself, or the space is small).
        attempts = 0
        while len(out) < n and attempts < 200 * n:
            attempts += 1
            point = self.space.sample(self.rng)
            if self._is_new(point):
                self._mark_pending(point)
                out.append(point)
        if len(out) < n and self.space.size <= 200_000:
            for point in self.space.enumerate():
                if len(out) == n:
                    break
                if self._is_new(point):
                    self._mark_pending(point)
                    out.append(point)
        return out

    def tell(self, points: Sequence[Point], results: Sequence[PointResult]) -> None:
        if len(points) != len(results):
            raise ParameterError(f"tell got {len(points)} points and {len(results)} results")
        for point, result in zip(points, results, strict=True):
            point = self.space.normalize(point)
            key = self.space.key(point)
            self.pending.pop(key, None)
            if key in self.told:
                continue  # told twice (e.g. a resumed sweep): learn it once
            self.told[key] = result
            self.history.append((point, result))
            self._observe(point, result)

    @property
    def n_told(self) -> int:
        return len(self.told)

    def best(self) -> tuple[Point, PointResult] | None:
        """The best feasible point told so far."""
        feasible = [(p, r) for p, r in self.history if r.feasible and r.objective is not None]
        if not feasible:
            return None
        return min(feasible, key=lambda pr: pr[1].objective)

    # -- for subclasses ------------------------------------------------------------------------

    def _propose(self, n: int) -> list[Point]:
        return []

    def _observe(self, point: Point, result: PointResult) -> None:
        pass

    def _is_new(self, point: Point) -> bool:
        key = self.space.key(point)
        return key not in self.pending and key not in self.told

    def _mark_pending(self, point: Point) -> None:
        self.pending[self.space.key(point)] = point


def penalized_value(result: PointResult, worst: float) -> float:
    """The naive penalty scalarization: log objective if feasible; else worse than ``worst``
    (the worst log objective measured so far): by 1 if over budget, by 2 if not measured
    (static infeasibility, failure)."""
    if result.feasible and result.objective is not None and result.objective > 0:
        return math.log(result.objective)
    if result.objective is not None and result.objective > 0:
        return max(math.log(result.objective), worst) + 1.0
    return worst + 2.0


def make_optimizer(name: str, space: Space, *, seed: int = 0,
                   warm_start: WarmStart | None = None, **options: Any) -> Optimizer:
    """An optimizer of method ``name`` (see :data:`METHODS`) over ``space``."""
    if name not in METHODS:
        raise ParameterError(f"unknown search method {name!r} (known: {', '.join(METHODS)})")
    module_name, class_name = METHODS[name].split(":")
    module = importlib.import_module(f"hwloop.search.methods.{module_name}")
    cls = getattr(module, class_name)
    return cls(space, seed=seed, warm_start=warm_start, **options)
