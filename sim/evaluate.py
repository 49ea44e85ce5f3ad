"""evaluate(): one design on one workload → an :class:`~hwloop.evaluation.Evaluation`.

Two fidelities: ``"rtl"`` co-simulates the generated Verilog in Verilator (one simulator
process runs every layer) and checks every result bit-exact against the golden GEMM; ``"model"``
uses the closed-form model (microseconds per layer, nothing simulated). Both add the area proxy
(Yosys, cached per design) and the energy proxy (actions x energy per action).

Identical GEMM shapes are evaluated once and counted ``repeat`` times: each
:class:`~hwloop.evaluation.LayerResult` holds the numbers of *one* copy and its ``repeat``;
totals are sums of value x repeat.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from hwloop import toolchain
from hwloop.errors import (
    ConfigError,
    InputError,
    ParameterError,
    SimulationError,
    check_seed,
)
from hwloop.evaluation import Evaluation, LayerResult
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.paths import cache_dir, write_cache_file
from hwloop.sim.area import AreaJob
from hwloop.sim.energy import COMPONENTS, EnergyTable, energy, load_energy_table
from hwloop.validate import plain_int
from hwloop.workloads import Layer, Workload, dedupe, load_workload

FIDELITIES = ("rtl", "model")

MappingSpec = Any  # None | Mapping | dict | Callable[[SystolicParams, Gemm], Mapping]


def _as_params(params: SystolicParams | dict[str, Any]) -> SystolicParams:
    if isinstance(params, SystolicParams):
        return params
    if isinstance(params, dict):
        return SystolicParams.from_dict(params)
    raise ParameterError(f"params must be SystolicParams or a dict, not {type(params).__name__}")


@functools.cache
def _chooser_fingerprint() -> str:
    """Hash of the mapping chooser's sources: a changed chooser invalidates stored choices."""
    digest = hashlib.sha256()
    folder = Path(__file__).resolve().parent / "systolic"
    for name in ("mapping.py", "model.py", "program.py"):
        path = folder / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=65536)
def _default_mapping(params: SystolicParams, gemm: Any) -> Any:
    """default_mapping, memoized in memory and on disk (the chooser searches many tilings)."""
    from hwloop.sim.systolic.mapping import Mapping, default_mapping

    key = hashlib.sha256(json.dumps(
        [params.params_hash, gemm.m, gemm.n, gemm.k, _chooser_fingerprint()]).encode()
    ).hexdigest()[:32]
    path = cache_dir() / "mappings" / f"{key}.json"
    try:
        return Mapping.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, InputError):
        pass
    chosen = default_mapping(params, gemm)
    write_cache_file(path, json.dumps(chosen.to_dict()))
    return chosen


def resolve_mapping(params: SystolicParams, gemm: Any, mapping: MappingSpec) -> Any:
    """The mapping of one GEMM: the default chooser's, a fixed one fit to the layer, or a rule's."""
    from hwloop.sim.systolic.mapping import Mapping

    if mapping is None:
        return _default_mapping(params, gemm)
    if isinstance(mapping, dict):
        mapping = Mapping.from_dict(mapping)
    if isinstance(mapping, Mapping):
        return mapping.fit_to(params, gemm)
    if callable(mapping):
        chosen = mapping(params, gemm)
        if not isinstance(chosen, Mapping):
            raise ParameterError(f"the mapping rule returned {type(chosen).__name__}, "
                                 "not a Mapping")
        return chosen
    raise ParameterError(f"mapping must be None, a Mapping, a dict or a callable, "
                         f"not {type(mapping).__name__}")


def _external_rows_over(params: SystolicParams, gemm: Any, limits: dict[str, int]
                        ) -> tuple[str, int, int] | None:
    """The first external memory (``a``, ``b``, ``c``) of which ``gemm`` needs more rows than
    ``limits`` gives it: (name, rows, limit); None if all fit."""
    from hwloop.sim.systolic.program import layout

    rows = dataclasses.asdict(layout(params, gemm))
    return next(((name, rows[f"{name}_rows"], limits[name]) for name in ("a", "b", "c")
                 if rows[f"{name}_rows"] > limits[name]), None)


def _layer_plan(params: SystolicParams, workload: Workload, mapping: MappingSpec
                ) -> list[tuple[Layer, int, Any, Any]]:
    """(first layer of the shape, total repeat, Gemm, Mapping) per distinct shape, checked."""
    from hwloop.sim.systolic.mapping import Gemm, check_mapping
    from hwloop.sim.systolic.program import FIELD_BITS

    plan = []
    for layer, repeat in dedupe(workload.layers):
        gemm = Gemm(m=layer.m, n=layer.n, k=layer.k)
        # instructions address external memory rows in FIELD_BITS-bit fields (the model, whose
        # time grows with the tiles, would walk such a layer for ever)
        over = _external_rows_over(params, gemm, dict.fromkeys("abc", 1 << FIELD_BITS))
        if over is not None:
            name, rows, limit = over
            raise ParameterError(
                f"layer {layer.name!r} ({layer.m}x{layer.n}x{layer.k}): needs {rows} rows of "
                f"external {name.upper()} memory, the accelerator addresses {limit}")
        try:
            chosen = resolve_mapping(params, gemm, mapping)
            check_mapping(params, gemm, chosen)
        except ParameterError as exc:
            raise ParameterError(f"layer {layer.name!r} ({layer.m}x{layer.n}x{layer.k}): {exc}"
                                 ) from None
        plan.append((layer, repeat, gemm, chosen))
    return plan


def _select(workload: Workload | str, layers: Iterable[str] | None, first: int | None
            ) -> Workload:
    loaded = load_workload(workload)
    if layers is not None or first is not None:
        loaded = loaded.select(layers=layers, first=first)
    return loaded


def check_design(params: SystolicParams | dict[str, Any], workload: Workload | str,
                 mapping: MappingSpec = None, *, layers: Iterable[str] | None = None,
                 first: int | None = None, out_shift: int | None = None) -> None:
    """Raise :class:`ParameterError` if the design cannot run the workload (before simulating).

    Catches mappings that do not fit the scratchpads, scratchpads too small for any tile and
    an ``out_shift`` the design cannot apply.
    """
    params = _as_params(params)
    plan = _layer_plan(params, _select(workload, layers, first), mapping)
    _out_shifts(params, plan, out_shift)


def _out_shifts(params: SystolicParams, plan: list[tuple[Layer, int, Any, Any]],
                out_shift: int | None) -> list[int | None]:
    """The requantization shift of every planned layer (None: the design has no out_bits)."""
    from hwloop.sim.systolic.golden import resolve_out_shift

    shifts: list[int | None] = [resolve_out_shift(params, gemm, out_shift)
                                for _, _, gemm, _ in plan]  # checks out_shift
    return [None] * len(plan) if params.out_bits is None else shifts


def evaluate(
    params: SystolicParams | dict[str, Any],
    workload: Workload | str,
    mapping: MappingSpec = None,
    fidelity: str = "rtl",
    *,
    layers: Iterable[str] | None = None,
    first: int | None = None,
    seed: int = 0,
    waves: bool = False,
    workdir: Path | None = None,
    energy_table: EnergyTable | str | Path | None = None,
    reuse: bool = True,
    out_shift: int | None = None,
) -> Evaluation:
    """Evaluate ``params`` on ``workload`` at ``fidelity`` ("rtl" or "model").

    ``mapping``: None (the default chooser per layer), a Mapping fit to every layer, or a
    callable ``(params, gemm) -> Mapping``. ``layers``/``first`` pick layers by name / the first
    N. ``out_shift`` (designs with ``out_bits``): the requantization shift of every layer;
    None picks one per layer (``golden.default_out_shift``); each layer's result records the
    shift it used. At RTL fidelity every result is compared with the golden model; a mismatch
    raises :class:`SimulationError` naming the layer and the seed.

    ``reuse``: a finished evaluation of the same design (parameters and generator/harness
    sources), layer shapes, mappings, fidelity, seed and tool versions is deterministic; its
    per-layer cycles and action counts are kept in ``$HWLOOP_CACHE/evaluations/`` and reused
    (area and energy are recomputed). Never with ``waves`` (that asks for a new simulation).

    The area proxy's synthesis (Verilog generation and Yosys, in a child process:
    ``AreaJob``) runs while the layers are mapped, modelled or co-simulated; ``wall``'s
    ``synthesize_s`` is Yosys's own time, which overlaps the others.
    """
    start = time.perf_counter()
    if fidelity not in FIDELITIES:
        raise ParameterError(f"fidelity must be one of {', '.join(FIDELITIES)}, not {fidelity!r}")
    seed = plain_int(seed)  # a numpy integer is keyed and reported as an int
    check_seed(seed)
    params = _as_params(params)
    selected = _select(workload, layers, first)
    table = energy_table if isinstance(energy_table, EnergyTable) else load_energy_table(
        energy_table)
    area_job = AreaJob(params)  # synthesis runs meanwhile
    try:
        plan = _layer_plan(params, selected, mapping)
        shifts = _out_shifts(params, plan, out_shift)
        runs, exact, wall, artifacts = _run(params, plan, fidelity, shifts, seed=seed,
                                            waves=waves, workdir=workdir, reuse=reuse)
    except BaseException:
        area_job.cancel()
        raise
    area = area_job.result()
    wall["synthesize_s"] = area.synth_s
    from hwloop.sim.systolic.bounds import cycle_bounds

    results: list[LayerResult] = []
    breakdown = dict.fromkeys(COMPONENTS, 0.0)
    total_cycles = total_macs = 0
    total_energy = 0.0
    for (layer, repeat, gemm, chosen), run, ok, shift in zip(plan, runs, exact, shifts,
                                                             strict=True):
        layer_energy, parts = energy(params, run.actions, table)
        macs = gemm.m * gemm.n * gemm.k
        results.append(LayerResult(
            name=layer.name, m=gemm.m, n=gemm.n, k=gemm.k, cycles=int(run.cycles), macs=macs,
            utilization=macs / (params.rows * params.cols * max(int(run.cycles), 1)),
            energy_pj=layer_energy, bit_exact=ok, mapping=chosen.to_dict(),
            actions={k: int(v) for k, v in run.actions.items()}, repeat=repeat,
            out_shift=shift, bounds=cycle_bounds(params, run.actions),
            energy_breakdown=dict(parts)))
        total_cycles += int(run.cycles) * repeat
        total_macs += macs * repeat
        total_energy += layer_energy * repeat
        for part, value in parts.items():
            breakdown[part] += value * repeat
    if not math.isfinite(total_energy * total_cycles):  # each layer's energy is finite
        raise ConfigError(f"{table.source}: the energy of {params.name} on {selected.name!r} is "
                          "too large to compute (energy x cycles): check the table's values")
    wall["total_s"] = time.perf_counter() - start
    return Evaluation(
        params=params.to_dict(),
        workload=selected.name,
        fidelity=fidelity,
        layers=results,
        cycles=total_cycles,
        macs=total_macs,
        utilization=total_macs / (params.rows * params.cols * max(total_cycles, 1)),
        area=area.area,
        area_cells=area.area_cells,
        sram_bits=area.sram_bits,
        energy_pj=total_energy,
        energy_breakdown=breakdown,
        edp=total_energy * total_cycles,
        bit_exact=None if fidelity == "model" else all(exact),
        wall=wall,
        tool_versions=dict(toolchain.tool_versions()),
        cell_counts=dict(area.cell_counts),
        artifacts=artifacts,
    )


def _run(params: SystolicParams, plan: list[tuple[Layer, int, Any, Any]], fidelity: str,
         shifts: list[int | None], *, seed: int, waves: bool, workdir: Path | None,
         reuse: bool) -> tuple[list[Any], list[bool | None], dict[str, float], dict[str, str]]:
    """The runs of ``plan`` (reused, modelled or co-simulated), their bit-exactness, wall times
    and artifacts (see ``evaluate``)."""
    wall = {"build_s": 0.0, "simulate_s": 0.0, "synthesize_s": 0.0}
    artifacts: dict[str, str] = {}
    reuse_path = (_reuse_path(params, plan, fidelity, seed, shifts) if reuse and not waves
                  else None)
    stored = _load_runs(reuse_path, len(plan)) if reuse_path is not None else None
    if stored is not None:
        runs, exact = stored
        artifacts["reused"] = str(reuse_path)
    elif fidelity == "model":
        runs, exact = _run_model(params, plan)
    else:
        if waves and workdir is None:  # the simulator deletes its own temporary folder
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            workdir = cache_dir() / "waves" / f"{params.name}-{stamp}-{os.getpid()}"
        runs, exact, build_s, simulate_s, waves_path = _run_rtl(
            params, plan, seed=seed, waves=waves, workdir=workdir, shifts=shifts)
        wall["build_s"], wall["simulate_s"] = build_s, simulate_s
        if waves_path:
            artifacts["waves"] = waves_path
    if reuse_path is not None and stored is None:
        _store_runs(reuse_path, runs, exact)
    return runs, exact, wall, artifacts


@functools.cache
def _design_fingerprint() -> str:
    """Hash of everything that makes the hardware, its harness and its model."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for folder in (root / "hdl" / "systolic", root / "sim" / "systolic"):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".v", ".sv", ".cpp", ".c", ".h"):
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _reuse_path(params: SystolicParams, plan: list[tuple[Layer, int, Any, Any]],
                fidelity: str, seed: int, shifts: list[int | None]) -> Path:
    versions = toolchain.tool_versions()
    key = hashlib.sha256(json.dumps({
        "params": params.params_hash, "design": _design_fingerprint(), "fidelity": fidelity,
        "seed": seed if fidelity == "rtl" else None,
        "layers": [[g.m, g.n, g.k, chosen.to_dict()] + ([] if shift is None else [shift])
                   for (_, _, g, chosen), shift in zip(plan, shifts, strict=True)],
        "tools": {k: versions.get(k) for k in ("verilator", "amaranth", "cocotb", "numpy",
                                                "cxx", "python")},
    }, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / "evaluations" / f"{key}.json"


class _StoredRun:
    def __init__(self, cycles: int, actions: dict[str, int]):
        self.cycles = cycles
        self.actions = actions


def _load_runs(path: Path, count: int) -> tuple[list[Any], list[bool | None]] | None:
    try:
        data = json.loads(path.read_text())
        runs = [_StoredRun(int(x["cycles"]), {k: int(v) for k, v in x["actions"].items()})
                for x in data["runs"]]
        exact = [x["bit_exact"] for x in data["runs"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if len(runs) != count or any(e is False for e in exact):
        return None
    return runs, exact


def _store_runs(path: Path, runs: list[Any], exact: list[bool | None]) -> None:
    data = {"runs": [{"cycles": int(r.cycles), "actions": {k: int(v) for k, v in
                                                          r.actions.items()},
                      "bit_exact": e} for r, e in zip(runs, exact, strict=True)]}
    write_cache_file(path, json.dumps(data))


def _run_model(params: SystolicParams, plan: list[tuple[Layer, int, Any, Any]]
               ) -> tuple[list[Any], list[bool | None]]:
    from hwloop.sim.systolic.model import model_gemm

    runs = [model_gemm(params, gemm, chosen) for _, _, gemm, chosen in plan]
    return runs, [None] * len(runs)


def _run_rtl(params: SystolicParams, plan: list[tuple[Layer, int, Any, Any]], *, seed: int,
             waves: bool, workdir: Path | None, shifts: list[int | None]
             ) -> tuple[list[Any], list[bool | None], float, float, str | None]:
    from hwloop.sim.systolic.golden import random_operands, stored_golden
    from hwloop.sim.systolic.harness import memory_depths
    from hwloop.sim.systolic.rtl import RtlSimulator

    # before any operand is drawn (a layer too large for the harness's memories may be too
    # large for this machine's) and before the build
    depths = memory_depths(params)
    for layer, _, gemm, _ in plan:
        over = _external_rows_over(params, gemm, depths)
        if over is not None:
            name, rows, limit = over
            raise ParameterError(
                f"layer {layer.name!r} ({gemm.m}x{gemm.n}x{gemm.k}): needs {rows} rows of "
                f"external {name.upper()} memory, the co-simulation harness of {params.name} "
                f"has {limit} (--fidelity model has no such limit)")
    rng = np.random.default_rng(seed)
    jobs = []
    for _, _, gemm, chosen in plan:
        a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
        jobs.append((gemm, chosen, a, b))
    simulator = RtlSimulator(params, waves=waves, workdir=workdir)
    build_s = float(simulator.build())
    sim_start = time.perf_counter()
    runs = simulator.run(jobs, out_shifts=shifts)
    simulate_s = time.perf_counter() - sim_start
    exact: list[bool | None] = []
    failures = []
    for (layer, _, gemm, _), (_, _, a, b), run, shift in zip(plan, jobs, runs, shifts,
                                                             strict=True):
        expected = stored_golden(a, b, params, shift=shift or 0)
        got = None if run.c is None else np.asarray(run.c)
        ok = got is not None and got.shape == expected.shape and bool(
            np.array_equal(got.astype(np.int64), expected))
        exact.append(ok)
        if not ok:
            failures.append(_mismatch(layer, gemm, got, expected))
    if failures:
        waves_path = getattr(simulator, "waves_path", None)
        raise SimulationError(f"RTL result differs from the golden model (seed {seed}, "
                              f"{params.name}): {failures[0]}"
                              + (f"; and {len(failures) - 1} more layers" if failures[1:] else "")
                              + (f"; waves: {waves_path}" if waves_path else ""))
    waves_path = getattr(simulator, "waves_path", None)
    return runs, exact, build_s, simulate_s, str(waves_path) if waves_path else None


def _mismatch(layer: Layer, gemm: Any, got: np.ndarray | None, expected: np.ndarray) -> str:
    where = f"layer {layer.name!r} ({gemm.m}x{gemm.n}x{gemm.k})"
    if got is None:
        return f"{where}: no result read back"
    if got.shape != expected.shape:
        return f"{where}: result shape {got.shape}, expected {expected.shape}"
    bad = np.argwhere(got.astype(np.int64) != expected)
    i, j = (int(x) for x in bad[0])
    return (f"{where}: {len(bad)} of {expected.size} elements differ, first C[{i},{j}] = "
            f"{int(got[i, j])}, expected {int(expected[i, j])}")


MappingRule = Callable[[SystolicParams, Any], Any]
