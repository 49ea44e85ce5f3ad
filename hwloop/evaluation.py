"""The Evaluation record: what one evaluation of a design on a workload measured.

Data flows one way: parameters → hdl → sim → Evaluation → search. Search reads only
:meth:`Evaluation.metrics`; everything else is for people and reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Metric names that budgets and objectives may refer to (all: lower is better).
METRICS = ("cycles", "energy_pj", "edp", "area", "area_cells", "sram_bits")


@dataclass
class LayerResult:
    name: str
    m: int
    n: int
    k: int
    cycles: int
    macs: int
    utilization: float
    energy_pj: float
    bit_exact: bool | None  # None at model fidelity: nothing was simulated
    mapping: dict[str, Any] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    repeat: int = 1  # identical layers evaluated once, counted ``repeat`` times
    out_shift: int | None = None  # requantization shift (designs with out_bits), else None
    #: per resource (compute, read, write), a lower bound on ``cycles`` from its action counts
    #: (``hwloop.sim.systolic.bounds``)
    bounds: dict[str, int] = field(default_factory=dict)
    #: ``energy_pj`` per component (mac, pe_reg, the SRAMs, dram), for one copy
    energy_breakdown: dict[str, float] = field(default_factory=dict)


@dataclass
class Evaluation:
    params: dict[str, Any]
    workload: str
    fidelity: str  # "rtl" or "model"
    layers: list[LayerResult]
    cycles: int
    macs: int
    utilization: float
    area: float  # area proxy (weighted cells + SRAM bits), see constraints/area.toml
    area_cells: int  # synthesized logic cells
    sram_bits: int
    energy_pj: float
    energy_breakdown: dict[str, float]
    edp: float  # energy (pJ) x cycles
    bit_exact: bool | None
    wall: dict[str, float]  # build_s, simulate_s, synthesize_s, total_s
    tool_versions: dict[str, str]
    cell_counts: dict[str, int] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # e.g. "waves": FST path

    def metrics(self) -> dict[str, float]:
        """The numbers budgets and objectives are stated in."""
        return {
            "cycles": float(self.cycles),
            "energy_pj": float(self.energy_pj),
            "edp": float(self.edp),
            "area": float(self.area),
            "area_cells": float(self.area_cells),
            "sram_bits": float(self.sram_bits),
            "utilization": float(self.utilization),
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
