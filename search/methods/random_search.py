"""Random search: uniform samples of the space, never repeating a point. The baseline."""

from __future__ import annotations

from hwloop.search.methods.base import Optimizer
from hwloop.search.space import Point


class RandomSearch(Optimizer):
    name = "random"

    def _propose(self, n: int) -> list[Point]:
        return [self.space.sample(self.rng) for _ in range(n)]
