"""Constrained Bayesian optimization over the joint hardware + mapping space.

After "Learned Hardware/Software Co-Design of Neural Accelerators" (arXiv 2010.02075): a GP
surrogate of the (log) objective, a model of feasibility — a GP per budgeted metric giving the
probability of staying within each budget, times a classifier of static infeasibility — and the
acquisition expected improvement x probability of feasibility. The acquisition is maximized
over the space's own discrete structure: thousands of candidate points sampled from the space
plus 1-2 parameter mutations of the best feasible points; a batch is taken greedily with a
constant liar. Candidates that the cheap static check (``check_design``) rejects are never
proposed, so after a few samples proposals are almost always feasible.
"""

from __future__ import annotations

from typing import Any

from hwloop.search.methods.base import Optimizer, WarmStart
from hwloop.search.methods.surrogate import (
    ConstrainedModel,
    StaticChecker,
    candidates,
    default_static_checker,
    pick_batch,
)
from hwloop.search.objective import PointResult, rescore
from hwloop.search.space import Point, Space

_DEFAULT = object()


class ConstrainedBO(Optimizer):
    name = "cbo"

    def __init__(self, space: Space, *, seed: int = 0, warm_start: WarmStart | None = None,
                 n_initial_points: int = 6, n_candidates: int = 2000,
                 static_checker: Any = _DEFAULT) -> None:
        super().__init__(space, seed=seed, warm_start=warm_start)
        self.n_initial_points = n_initial_points
        self.n_candidates = n_candidates
        self.checker: StaticChecker | None = (
            default_static_checker(space) if static_checker is _DEFAULT else static_checker)
        self._static: dict[tuple[Any, ...], str | None] = {}
        # Results of another sweep, judged under this space's budgets: extra model data.
        self._prior = [(space.normalize(p), rescore(space, r)) for p, r in self.warm_start]

    def _observations(self) -> list[tuple[Point, PointResult]]:
        told = {self.space.key(p) for p, _ in self.history}
        prior = [(p, r) for p, r in self._prior if self.space.key(p) not in told]
        return prior + self.history

    def _random_feasible(self, n: int) -> list[Point]:
        out: list[Point] = []
        keys: set[tuple[Any, ...]] = set()
        for _ in range(50 * n):
            if len(out) == n:
                break
            point = self.space.sample(self.rng)
            key = self.space.key(point)
            if key in keys or not self._is_new(point):
                continue
            if self.checker is not None:
                if key not in self._static:
                    self._static[key] = self.checker(point)
                if self._static[key] is not None:
                    continue
            keys.add(key)
            out.append(point)
        return out

    def _propose(self, n: int) -> list[Point]:
        observations = self._observations()
        measured = sum(1 for _, r in observations if r.objective is not None)
        if measured + len(self.pending) < self.n_initial_points:
            return self._random_feasible(n)
        model = ConstrainedModel(self.space, seed=self.seed).fit(observations)
        ranked = sorted((r.objective, i, p) for i, (p, r) in enumerate(observations)
                        if r.feasible and r.objective is not None)
        parents = [p for _, _, p in ranked[:8]]
        exclude = set(self.told) | set(self.pending)
        pool = candidates(self.space, self.rng, parents=parents,
                          n_random=self.n_candidates, n_local=self.n_candidates // 2,
                          exclude=exclude)
        return pick_batch(self.space, model, pool, n, pending=list(self.pending.values()),
                          checker=self.checker, static_cache=self._static)
