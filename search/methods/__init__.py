"""Search methods behind one ask/tell protocol: ``make_optimizer(name, space, seed=...)``."""

from hwloop.search.methods.base import METHODS, Optimizer, make_optimizer

__all__ = ["METHODS", "Optimizer", "make_optimizer"]
