"""Apollo-style population-based search with an adaptive ensemble and transfer.

After "Apollo: Transferable Architecture Exploration" (arXiv 2102.01723): three proposers
share one batch —

- ``evolution``: regularized evolution. A population of the most recent evaluations (aging:
  the oldest leaves when a new one joins); a parent is the best of a random tournament
  (feasible by objective, then over-budget by how far, then statically infeasible); a child
  mutates 1-2 of its parameters.
- ``model``: model-guided. The constrained surrogate of :mod:`cbo` (objective GP, budget
  GPs, static classifier) picks the best candidates by EI x probability of feasibility among
  mutations of the population and uniform samples.
- ``random``: uniform samples, the exploration floor.

The batch is allocated among them by their recent improvement (in the spirit of P3BO): each
proposer's share grows with the fraction of its last results that improved the best feasible
objective. Transfer: ``warm_start`` (points + results of another sweep, e.g. another budget or
workload set) is judged under this space's budgets; its best feasible points are proposed first
(re-evaluated here), seed the population, and train the models.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from hwloop.search.methods.base import Optimizer, WarmStart
from hwloop.search.methods.surrogate import (
    ConstrainedModel,
    StaticChecker,
    candidates,
    default_static_checker,
    pick_batch,
)
from hwloop.search.objective import DESIGN_METRICS, PointResult, rescore
from hwloop.search.space import Point, Space

_DEFAULT = object()
ARMS = ("evolution", "model", "random")


def fitness(result: PointResult) -> tuple[int, float]:
    """Lower is better: feasible by objective, then over budget by excess, then the rest."""
    if result.feasible and result.objective is not None:
        return (0, result.objective)
    if result.violations:
        return (1, max(result.violations.values()))
    return (2, 0.0)


class Apollo(Optimizer):
    name = "apollo"

    def __init__(self, space: Space, *, seed: int = 0, warm_start: WarmStart | None = None,
                 population_size: int = 16, tournament_size: int = 4,
                 n_initial_points: int = 6, n_candidates: int = 1500, window: int = 10,
                 n_transfer_seeds: int = 4, static_checker: Any = _DEFAULT) -> None:
        super().__init__(space, seed=seed, warm_start=warm_start)
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.n_initial_points = n_initial_points
        self.n_candidates = n_candidates
        self.checker: StaticChecker | None = (
            default_static_checker(space) if static_checker is _DEFAULT else static_checker)
        self._static: dict[tuple[Any, ...], str | None] = {}
        self.population: deque[tuple[Point, PointResult]] = deque(maxlen=population_size)
        self.credit: dict[str, deque[float]] = {arm: deque(maxlen=window) for arm in ARMS}
        self.origin: dict[tuple[Any, ...], str] = {}
        self._best: float | None = None
        self._prior = [(space.normalize(p), rescore(space, r)) for p, r in self.warm_start]
        # Design metrics (area...) of measured hardware designs: a child whose hardware is known
        # to break a budget is not worth an evaluation, whatever its mapping.
        self._over_budget: set[tuple[Any, ...]] = set()
        for point, result in self._prior:
            self._note_design(point, result)
        # Transfer: the prior's best feasible designs are re-evaluated first and, with the rest
        # of its best, form the first population (best youngest).
        ranked = sorted(self._prior, key=lambda pr: fitness(pr[1]))
        self._seeds = [p for p, r in ranked if r.feasible][:n_transfer_seeds]
        for point, result in reversed(ranked[:population_size]):
            self.population.append((point, result))

    # -- helpers -------------------------------------------------------------------------------

    def _statically_ok(self, point: Point) -> bool:
        if self.checker is None:
            return True
        key = self.space.key(point)
        if key not in self._static:
            self._static[key] = self.checker(point)
        return self._static[key] is None

    def _hardware_key(self, point: Point) -> tuple[Any, ...]:
        return tuple(point[d.name] for d in self.space.dims if d.section == "hardware")

    def _note_design(self, point: Point, result: PointResult) -> None:
        if result.metrics and any(result.metrics.get(m, 0.0) > limit
                                  for m, limit in self.space.budgets.items()
                                  if m in DESIGN_METRICS):
            self._over_budget.add(self._hardware_key(point))

    def _fresh(self, point: Point, taken: set[tuple[Any, ...]]) -> bool:
        key = self.space.key(point)
        return (key not in taken and self._is_new(point)
                and self._hardware_key(point) not in self._over_budget
                and self._statically_ok(point))

    def _allocate(self, n: int) -> dict[str, int]:
        """Split n among the proposers by recent improvement (P3BO-style), at least the
        exploration floor for each in expectation."""
        score = np.array([0.15 + (np.mean(self.credit[a]) if self.credit[a] else 0.3)
                          for a in ARMS])
        score[ARMS.index("random")] = 0.15  # random is the floor, not a competitor
        share = score / score.sum()
        counts = np.floor(share * n).astype(int)
        for i in self.rng.choice(len(ARMS), size=n - int(counts.sum()), p=share):
            counts[i] += 1
        return {arm: int(c) for arm, c in zip(ARMS, counts, strict=True)}

    def _evolve(self, n: int, taken: set[tuple[Any, ...]]) -> list[Point]:
        members = list(self.population)
        out: list[Point] = []
        for _ in range(30 * n):
            if len(out) == n or not members:
                break
            picks = self.rng.choice(len(members), size=min(self.tournament_size, len(members)),
                                    replace=False)
            parent = min((members[int(i)] for i in picks), key=lambda pr: fitness(pr[1]))[0]
            child = self.space.neighbors(parent, self.rng,
                                         changes=1 + int(self.rng.random() < 0.5))
            if self._fresh(child, taken):
                taken.add(self.space.key(child))
                out.append(child)
        return out

    def _model(self, n: int, taken: set[tuple[Any, ...]]) -> list[Point]:
        told = {self.space.key(p) for p, _ in self.history}
        observations = [(p, r) for p, r in self._prior if self.space.key(p) not in told]
        observations += self.history
        model = ConstrainedModel(self.space, seed=self.seed).fit(observations)
        if model.objective_gp is None:
            return []
        parents = [p for p, _ in sorted(self.population, key=lambda pr: fitness(pr[1]))]
        pool = candidates(self.space, self.rng, parents=parents[:8],
                          n_random=self.n_candidates // 2, n_local=self.n_candidates,
                          exclude=set(self.told) | set(self.pending) | taken)
        chosen = pick_batch(self.space, model, pool, n,
                            pending=list(self.pending.values()), checker=self.checker,
                            static_cache=self._static)
        taken.update(self.space.key(p) for p in chosen)
        return chosen

    def _random(self, n: int, taken: set[tuple[Any, ...]]) -> list[Point]:
        out: list[Point] = []
        for _ in range(50 * n):
            if len(out) == n:
                break
            point = self.space.sample(self.rng)
            if self._fresh(point, taken):
                taken.add(self.space.key(point))
                out.append(point)
        return out

    # -- protocol ------------------------------------------------------------------------------

    def _propose(self, n: int) -> list[Point]:
        taken: set[tuple[Any, ...]] = set()
        out: list[Point] = []
        while self._seeds and len(out) < n:
            point = self._seeds.pop(0)
            if self._fresh(point, taken):
                taken.add(self.space.key(point))
                self.origin[self.space.key(point)] = "transfer"
                out.append(point)
        need = n - len(out)
        if need == 0:
            return out
        measured = sum(1 for _, r in self.history if r.objective is not None)
        if not self._prior and measured + len(self.pending) < self.n_initial_points:
            batch = {"random": self._random(need, taken)}
        else:
            counts = self._allocate(need)
            batch = {"evolution": self._evolve(counts["evolution"], taken),
                     "model": self._model(counts["model"], taken) if counts["model"] else [],
                     "random": self._random(counts["random"], taken)}
            short = need - sum(len(v) for v in batch.values())
            if short > 0:  # e.g. no model yet, or a tiny population: fill by evolution
                batch["evolution"] += self._evolve(short, taken)
        for arm, points in batch.items():
            for point in points:
                self.origin[self.space.key(point)] = arm
                out.append(point)
        return out

    def _observe(self, point: Point, result: PointResult) -> None:
        key = self.space.key(point)
        arm = self.origin.pop(key, None)
        improved = 0.0
        if result.feasible and result.objective is not None:
            if self._best is None or result.objective < self._best:
                improved = 1.0 if self._best is None else min(
                    1.0, 0.5 + 10 * math.log(self._best / result.objective))
                self._best = result.objective
        if arm in self.credit:
            self.credit[arm].append(improved)
        self.population.append((point, result))
        self._note_design(point, result)
