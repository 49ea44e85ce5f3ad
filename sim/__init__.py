"""Simulation and evaluation: ``evaluate(params, workload, ...)`` and ``check_design(...)``."""

from hwloop.sim.evaluate import check_design, evaluate

__all__ = ["evaluate", "check_design"]
