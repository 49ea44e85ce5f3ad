"""Shared helpers of the cache tests (no tests here)."""

from hwloop.sim.cache.patterns import TRACE_DTYPE, adversarial, gaps

__all__ = ["TRACE_DTYPE", "adversarial", "gaps"]
