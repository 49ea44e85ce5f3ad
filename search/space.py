"""Design spaces: hardware + mapping parameters, budgets, objective and workloads, from TOML.

A space file declares what a sweep may vary and what it must respect::

    name = "edge"
    objective = "edp"            # cycles | energy_pj | edp
    fidelity = "model"           # default fidelity of a sweep over this space

    [hardware]                   # SystolicParams fields; undeclared ones keep their defaults
    rows = { values = [4, 8, 16] }                  # a choice
    cols = { min = 4, max = 16, step = 4 }          # an integer range with a step
    ifmap_kib = { min = 8, max = 256, log = true }  # powers of two from min to max
    dataflow = { values = ["os", "ws"] }
    in_bits = 8                                     # fixed
    out_bits = { values = [0, 8] }                  # 0: raw acc_bits sums (TOML has no null)
    read_ahead = { values = [false, true] }         # a switch

    [mapping]                    # optional: one Mapping applied to every layer via fit_to
    tile_m = { values = [1, 2, 4], times = "rows" } # in units of the array's rows
    tile_n = { values = [1, 2, 4], times = "cols" }
    tile_k = { min = 16, max = 512, log = true }    # absolute
    order = { values = ["mnk", "nmk"] }

    [budgets]                    # metric <= limit, metrics of hwloop.evaluation.METRICS
    area = 2.0e6

    [[workloads]]                # or: workloads = ["mlp", "dqn"]
    name = "resnet50"
    first = 4                    # only the first 4 layers

Every dimension is discrete: a finite, ordered list of values. A *point* is a dict with one
value for each declared dimension (fixed ones included); :meth:`Space.split` turns it into
the :class:`SystolicParams` and :class:`Mapping` it stands for.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from hwloop.errors import ConfigError, ParameterError
from hwloop.evaluation import METRICS
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.paths import read_user_text

Point = dict[str, Any]

#: Metrics a space may minimize.
OBJECTIVES = ("cycles", "energy_pj", "edp")
FIDELITIES = ("rtl", "model")
HARDWARE_PARAMETERS = tuple(f.name for f in fields(SystolicParams))
#: ``out_bits`` in a space: this value stands for None (C written back as raw ``acc_bits`` sums),
#: so that one dimension can hold both raw and requantized designs.
RAW_OUT_BITS = 0
MAPPING_PARAMETERS = ("tile_m", "tile_n", "tile_k", "order")
TOP_KEYS = ("name", "objective", "fidelity", "hardware", "mapping", "budgets", "workloads")
_TIMES = ("rows", "cols")
#: The most values a min/max range may list (a log range doubles, so it never comes close).
MAX_RANGE_VALUES = 1_000_000
_SPEC_KEYS = ("values", "min", "max", "step", "log", "times")


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: its name, section, ordered values and how to encode them.

    ``kind`` is ``"ordinal"`` (numbers in increasing order; encoded by index, which for a
    ``log`` range is linear in log2) or ``"categorical"`` (strings; encoded one-hot).
    ``times`` (mapping tiles only) says the value is in units of the array's rows or cols.
    """

    name: str
    section: str  # "hardware" | "mapping"
    values: tuple[Any, ...]
    kind: str
    log: bool = False
    times: str | None = None

    @property
    def fixed(self) -> bool:
        return len(self.values) == 1

    def index(self, value: Any) -> int:
        try:
            return self.values.index(value)
        except ValueError:
            raise ParameterError(
                f"{self.name}={value!r} is not in the space (values: "
                f"{', '.join(map(str, self.values))})") from None

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "section": self.section, "values": list(self.values),
                "kind": self.kind, "log": self.log, "times": self.times}


@dataclass(frozen=True)
class WorkloadSpec:
    """A workload of the set: a name for ``hwloop.workloads.load_workload``, optional first N.

    A workload file (CSV) also has its ``path`` (absolute: workers may run in another folder)
    and the ``sha256`` of its contents, which goes into the space hash: an edited file is
    another space, so its stale results are not reused.
    """

    name: str
    first: int | None = None
    path: str | None = None
    sha256: str | None = None

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "first": self.first}
        if self.sha256 is not None:  # only for files: the hashes of other spaces stay as they were
            spec["sha256"] = self.sha256
        return spec


@dataclass(eq=False)
class Space:
    name: str
    objective: str
    fidelity: str
    dims: tuple[Dimension, ...]
    budgets: dict[str, float]
    workloads: tuple[WorkloadSpec, ...]
    path: str | None = None
    _loaded_workloads: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {d.name: d for d in self.dims}
        self._free = tuple(d for d in self.dims if not d.fixed)

    def __getstate__(self) -> dict[str, Any]:
        # Loaded workloads are a cache: don't ship them to worker processes.
        state = dict(self.__dict__)
        state["_loaded_workloads"] = {}
        return state

    # -- identity ------------------------------------------------------------------------------

    @property
    def hash(self) -> str:
        """What identifies the space: parameters, budgets, objective and workloads."""
        ident = {
            "dims": [d.spec() for d in self.dims],
            "budgets": dict(sorted(self.budgets.items())),
            "objective": self.objective,
            "workloads": [w.spec() for w in self.workloads],
        }
        text = json.dumps(ident, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def free_dims(self) -> tuple[Dimension, ...]:
        """The dimensions with more than one value (the ones a search moves)."""
        return self._free

    def dim(self, name: str) -> Dimension:
        return self._by_name[name]

    @property
    def size(self) -> int:
        return math.prod(len(d.values) for d in self.dims)

    @property
    def has_mapping(self) -> bool:
        return any(d.section == "mapping" for d in self.dims)

    # -- points --------------------------------------------------------------------------------

    def key(self, point: Point) -> tuple[Any, ...]:
        """A hashable identity of a point (its values in dimension order)."""
        return tuple(point[d.name] for d in self.dims)

    def point_hash(self, point: Point) -> str:
        text = json.dumps(self.normalize(point), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def normalize(self, point: Point) -> Point:
        """Check a point belongs to the space; return it with plain Python values, in order."""
        unknown = sorted(set(point) - set(self._by_name))
        if unknown:
            raise ParameterError(f"unknown parameter {unknown[0]!r} in point")
        out: Point = {}
        for d in self.dims:
            if d.name not in point:
                raise ParameterError(f"point has no value for {d.name!r}")
            # the space's own value (e.g. 4, not 4.0 or numpy.int64(4)): keys compare equal
            out[d.name] = d.values[d.index(_plain(point[d.name]))]
        return out

    def sample(self, rng: np.random.Generator) -> Point:
        """A point drawn uniformly (each dimension independently)."""
        return {d.name: d.values[int(rng.integers(len(d.values)))] for d in self.dims}

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Point]:
        """Every point of a small space (ParameterError above ``limit`` points)."""
        if self.size > limit:
            raise ParameterError(f"space {self.name!r} has {self.size} points, more than the "
                                 f"{limit} that enumerate() lists")
        names = [d.name for d in self.dims]
        for values in itertools.product(*(d.values for d in self.dims)):
            yield dict(zip(names, values, strict=True))

    def neighbors(self, point: Point, rng: np.random.Generator, *, changes: int = 1) -> Point:
        """A mutation: ``changes`` free dimensions moved (ordinal: ±1..2 steps; categorical:
        another value)."""
        out = dict(point)
        if not self._free:
            return out
        chosen = rng.choice(len(self._free), size=min(changes, len(self._free)), replace=False)
        for i in chosen:
            d = self._free[int(i)]
            at = d.index(point[d.name])
            if d.kind == "ordinal":
                step = int(rng.choice([-2, -1, 1, 2], p=[0.15, 0.35, 0.35, 0.15]))
                new = min(max(at + step, 0), len(d.values) - 1)
                if new == at:
                    new = at - 1 if at > 0 else at + 1
            else:
                new = int(rng.choice([j for j in range(len(d.values)) if j != at]))
            out[d.name] = d.values[new]
        return out

    # -- encoding for models ---------------------------------------------------------------------

    @property
    def encoded_size(self) -> int:
        return sum(1 if d.kind == "ordinal" else len(d.values) for d in self._free)

    def encode(self, point: Point) -> np.ndarray:
        """A point as a vector in [0, 1]^encoded_size: ordinal dims by normalized index (log
        ranges are powers of two, so linear in log2), categorical dims one-hot."""
        vec: list[float] = []
        for d in self._free:
            at = d.index(point[d.name])
            if d.kind == "ordinal":
                vec.append(at / (len(d.values) - 1))
            else:
                vec.extend(1.0 if j == at else 0.0 for j in range(len(d.values)))
        return np.asarray(vec, dtype=float)

    def encode_many(self, points: list[Point]) -> np.ndarray:
        if not points:
            return np.zeros((0, self.encoded_size))
        return np.stack([self.encode(p) for p in points])

    def decode(self, vector: np.ndarray) -> Point:
        """The point nearest to an encoded vector (rounded index, argmax of one-hot)."""
        point: Point = {d.name: d.values[0] for d in self.dims if d.fixed}
        at = 0
        for d in self._free:
            if d.kind == "ordinal":
                i = int(round(float(vector[at]) * (len(d.values) - 1)))
                point[d.name] = d.values[min(max(i, 0), len(d.values) - 1)]
                at += 1
            else:
                point[d.name] = d.values[int(np.argmax(vector[at:at + len(d.values)]))]
                at += len(d.values)
        return {d.name: point[d.name] for d in self.dims}

    # -- meaning ---------------------------------------------------------------------------------

    def split(self, point: Point) -> tuple[SystolicParams, Any]:
        """The accelerator parameters and the mapping (or None: default per layer) of a point.

        Raises :class:`ParameterError` for an illegal combination (e.g. acc_bits < 2 in_bits).
        """
        hw = {d.name: _plain(point[d.name]) for d in self.dims if d.section == "hardware"}
        if hw.get("out_bits") == RAW_OUT_BITS:
            hw["out_bits"] = None
        params = SystolicParams.from_dict(hw)
        if not self.has_mapping:
            return params, None
        from hwloop.sim.systolic.mapping import Mapping

        values: dict[str, Any] = {}
        for d in self.dims:
            if d.section != "mapping":
                continue
            value = _plain(point[d.name])
            if d.times is not None:
                value = value * getattr(params, d.times)
            values[d.name] = value
        return params, Mapping(**values)

    def load_workloads(self) -> list[Any]:
        """The workloads of the set (``first`` applied), loaded once per process."""
        from hwloop.workloads import load_workload

        out = []
        for w in self.workloads:
            cache_key = f"{w.name}\0{w.first}"
            if cache_key not in self._loaded_workloads:
                workload = load_workload(w.path or w.name)
                if w.first is not None:
                    workload = workload.select(first=w.first)
                self._loaded_workloads[cache_key] = workload
            out.append(self._loaded_workloads[cache_key])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "objective": self.objective, "fidelity": self.fidelity,
                "dims": [d.spec() for d in self.dims], "budgets": dict(self.budgets),
                "workloads": [w.spec() for w in self.workloads], "hash": self.hash}


def _plain(value: Any) -> Any:
    """numpy scalars (as optimizers return them) to plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- loading ---------------------------------------------------------------------------------------

_LINE_RE = re.compile(r"\(at line (\d+), column \d+\)")
_END_RE = re.compile(r"\(at end of document\)")


def load_space(path: str | Path) -> Space:
    """Read and validate a space file. Errors are :class:`ConfigError` naming file:line (TOML
    syntax) or the file and key (everything else)."""
    path = Path(path)
    return parse_space(read_user_text(path, what="space file"), path=str(path))


def parse_space(text: str, *, path: str = "<space>") -> Space:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _LINE_RE.search(message)
        line = int(match.group(1)) if match else None
        if line is None and _END_RE.search(message):
            line = max(len(text.splitlines()), 1)  # the end of the document is its last line
        message = _END_RE.sub("", _LINE_RE.sub("", message)).strip()
        raise ConfigError.at(path, line, f"TOML syntax error: {message}") from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError.at(path, None, "TOML syntax error: arrays or inline tables nested "
                                         "too deeply") from None

    def fail(message: str) -> ConfigError:
        return ConfigError.at(path, None, message)

    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (known: {', '.join(TOP_KEYS)})")
    name = data.get("name", Path(path).stem)
    if not isinstance(name, str) or not name:
        raise fail(f"name must be a non-empty string, not {name!r}")
    objective = data.get("objective", "edp")
    if objective not in OBJECTIVES:
        raise fail(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    fidelity = data.get("fidelity", "model")
    if fidelity not in FIDELITIES:
        raise fail(f"fidelity must be one of {', '.join(FIDELITIES)}, not {fidelity!r}")

    dims: list[Dimension] = []
    hardware = data.get("hardware", {})
    if not isinstance(hardware, dict):
        raise fail("[hardware] must be a table")
    for key, spec in hardware.items():
        if key not in HARDWARE_PARAMETERS:
            raise fail(f"[hardware] unknown parameter {key!r}")
        dims.append(_dimension(fail, "hardware", key, spec))
    _check_hardware_values(fail, dims)
    mapping = data.get("mapping")
    if mapping is not None:
        if not isinstance(mapping, dict):
            raise fail("[mapping] must be a table")
        for key, spec in mapping.items():
            if key not in MAPPING_PARAMETERS:
                raise fail(f"[mapping] unknown parameter {key!r}")
            dims.append(_dimension(fail, "mapping", key, spec))
        missing = [k for k in MAPPING_PARAMETERS if k not in mapping]
        if missing:
            raise fail(f"[mapping] needs {', '.join(MAPPING_PARAMETERS)}; missing {missing[0]!r}")
        _check_mapping_values(fail, dims)

    budgets_in = data.get("budgets", {})
    if not isinstance(budgets_in, dict):
        raise fail("[budgets] must be a table")
    budgets: dict[str, float] = {}
    for key, limit in budgets_in.items():
        if key not in METRICS:
            raise fail(f"[budgets] unknown metric {key!r} (known: {', '.join(METRICS)})")
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
            raise fail(f"[budgets] {key} must be a positive number, not {limit!r}")
        budgets[key] = float(limit)

    workloads = _workloads(fail, data.get("workloads"), text=text, path=path)
    return Space(name=name, objective=objective, fidelity=fidelity, dims=tuple(dims),
                 budgets=budgets, workloads=workloads, path=path)


def _dimension(fail: Any, section: str, key: str, spec: Any) -> Dimension:
    where = f"[{section}] {key}"
    if not isinstance(spec, dict):
        spec = {"values": [spec]}
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    if unknown:
        raise fail(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_SPEC_KEYS)})")
    times = spec.get("times")
    if times is not None and (section != "mapping" or key == "order" or times not in _TIMES):
        if section != "mapping" or key == "order":
            raise fail(f"{where}: 'times' is only for the mapping's tile sizes")
        raise fail(f"{where}: times must be one of {', '.join(_TIMES)}, not {times!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise fail(f"{where}: log must be true or false, not {log!r}")
    if "values" in spec:
        extra = [k for k in ("min", "max", "step", "log") if k in spec]
        if extra:
            raise fail(f"{where}: give either values or min/max, not both ({extra[0]!r})")
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise fail(f"{where}: empty range (values must be a non-empty list)")
        if all(isinstance(v, str) for v in values) or all(isinstance(v, bool) for v in values):
            kind = "categorical"  # strings, or a switch such as read_ahead
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            kind = "ordinal"
            values = sorted(values)
        else:
            raise fail(f"{where}: values must be all integers, all strings or all booleans, "
                       f"not {values!r}")
        if len(set(values)) != len(values):
            raise fail(f"{where}: values repeat ({values!r})")
        return Dimension(key, section, tuple(values), kind, times=times)
    if "min" not in spec or "max" not in spec:
        raise fail(f"{where}: needs values = [...] or min and max")
    lo, hi = spec["min"], spec["max"]
    for label, v in (("min", lo), ("max", hi)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise fail(f"{where}: {label} must be an integer, not {v!r}")
    if log:
        if "step" in spec:
            raise fail(f"{where}: a log range has no step (it doubles)")
        if lo < 1:
            raise fail(f"{where}: a log range needs min >= 1, not {lo}")
        values = []
        v = lo
        while v <= hi:
            values.append(v)
            v *= 2
    else:
        step = spec.get("step", 1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise fail(f"{where}: step must be a positive integer, not {step!r}")
        count = len(range(lo, hi + 1, step))  # before listing them: 1..10**12 would not fit
        if count > MAX_RANGE_VALUES:
            raise fail(f"{where}: too many values ({count}; at most {MAX_RANGE_VALUES}): give a "
                       f"larger step or log = true")
        values = list(range(lo, hi + 1, step))
    if not values:
        raise fail(f"{where}: empty range (min {lo} > max {hi})")
    return Dimension(key, section, tuple(values), "ordinal", log=log, times=times)


def _params_error(values: Point) -> ParameterError | None:
    """Why SystolicParams refuses these hardware values (a space's values), or None."""
    values = dict(values)
    if values.get("out_bits") == RAW_OUT_BITS:
        values["out_bits"] = None
    try:
        SystolicParams.from_dict(values)
    except ParameterError as exc:
        return exc
    return None


#: At most this many combinations of the other hardware values are tried for a value that is
#: illegal with the defaults (it may be legal with some of them: acc_bits 8 with in_bits 4);
#: a larger space is left to the sweep rather than slow to load.
_COMBINATIONS_TRIED = 100_000


def _check_hardware_values(fail: Any, dims: list[Dimension]) -> None:
    """Every hardware value must be legal in some design of the space: one the generator
    refuses whatever the other parameters are (rows = 100) fails now, not as a sweep of
    infeasible rows."""
    hardware = [d for d in dims if d.section == "hardware"]
    for d in hardware:
        others = [o for o in hardware if o is not d]
        names = [o.name for o in others]
        for value in d.values:
            error = _params_error({d.name: value})
            if error is None or math.prod(len(o.values) for o in others) > _COMBINATIONS_TRIED:
                continue
            if not any(_params_error({**dict(zip(names, combination, strict=True)),
                                      d.name: value}) is None
                       for combination in itertools.product(*(o.values for o in others))):
                raise fail(f"[hardware] {d.name}: {error}")


def _check_mapping_values(fail: Any, dims: list[Dimension]) -> None:
    """Loop orders the mapping knows and tile sizes of at least one row."""
    from hwloop.sim.systolic.mapping import ORDERS

    order = next(d for d in dims if d.name == "order")
    for value in order.values:
        if value not in ORDERS:
            raise fail(f"[mapping] order {value!r} is not a loop order "
                       f"(known: {', '.join(ORDERS)})")
    # tile sizes are fit to each design and layer, but never below one row
    for d in dims:
        if d.section == "mapping" and d.name.startswith("tile_"):
            bad = next((v for v in d.values if isinstance(v, bool) or not isinstance(v, int)
                        or v < 1), None)
            if bad is not None:
                raise fail(f"[mapping] {d.name} must be positive integers, not {bad!r}")


def _workloads(fail: Any, raw: Any, *, text: str, path: str) -> tuple[WorkloadSpec, ...]:
    if raw is None:
        raise fail("no workloads (add workloads = [\"mlp\"] or [[workloads]] tables)")
    if not isinstance(raw, list) or not raw:
        raise fail("workloads must be a non-empty list of names or tables")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise fail(f"workloads[{i}] must be a name or a table, not {item!r}")
        unknown = sorted(set(item) - {"name", "first"})
        if unknown:
            raise fail(f"workloads[{i}]: unknown key {unknown[0]!r} (known: name, first)")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise fail(f"workloads[{i}]: name must be a non-empty string, not {name!r}")
        first = item.get("first")
        if first is not None and (isinstance(first, bool) or not isinstance(first, int)
                                  or first < 1):
            raise fail(f"workloads[{i}]: first must be a positive integer, not {first!r}")
        out.append(_workload_file(i, name, first, text=text, path=path)
                   or WorkloadSpec(name, first))
    names = [w.name for w in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise fail(f"workloads[{i}]: {name!r} is already workloads[{names.index(name)}]")
    _check_workload_names(fail, out)
    return tuple(out)


def _workload_file(i: int, name: str, first: int | None, *, text: str,
                   path: str) -> WorkloadSpec | None:
    """The spec of a workload file (a path relative to the space file's folder), read and
    checked now; for ``module:attr`` the hash of the layers it traces to; None for a built-in
    name. The order of the tests is ``load_workload``'s: built-ins first, then a .csv name or
    an existing file, then ``module:attr``."""
    from hwloop.errors import WorkloadError
    from hwloop.networks import BUILTINS
    from hwloop.workloads import load_topology_csv, load_torch_module, not_a_workload_file

    if name in BUILTINS:
        return None
    shown = Path(name).expanduser()
    if not shown.is_absolute():
        shown = Path(path).parent / shown  # as the user sees it: relative to where they run

    def missing(what: str) -> ConfigError:  # on the first line that quotes the name
        quoted = re.compile(r"""["']""" + re.escape(name) + r"""["']""")
        line = next((n for n, text_line in enumerate(text.splitlines(), start=1)
                     if quoted.search(text_line)), None)
        return ConfigError.at(path, line, f"workloads[{i}]: {what}")

    if not (name.lower().endswith(".csv") or shown.is_file()
            or ("/" in name and ":" not in name)):
        if ":" not in name:
            return None
        # traced now (on the meta device, as every evaluation does): the hash is of the layers
        # it gives, so an edit to the module or to anything it imports that changes a layer
        # makes another space, and a module that does not import fails here
        try:
            workload = load_torch_module(name)
        except WorkloadError as exc:
            raise missing(str(exc)) from None
        layers = json.dumps([layer.to_dict() for layer in workload.layers], sort_keys=True)
        return WorkloadSpec(name, first, sha256=hashlib.sha256(layers.encode()).hexdigest())
    unreadable = not_a_workload_file(shown)
    if unreadable:
        raise missing(unreadable)
    load_topology_csv(shown)  # a malformed file fails now, naming its own file:line
    digest = hashlib.sha256(shown.read_bytes()).hexdigest()
    return WorkloadSpec(name, first, path=str(shown.absolute()), sha256=digest)


def _check_workload_names(fail: Any, workloads: list[WorkloadSpec]) -> None:
    """Unknown built-in names fail now, not in the middle of a sweep (files and modules are
    loaded when evaluated)."""
    try:
        from hwloop.networks import BUILTINS
        from hwloop.workloads import load_workload
    except ImportError:
        return
    from hwloop.errors import WorkloadError

    for i, w in enumerate(workloads):
        if w.name in BUILTINS or ":" in w.name or "/" in w.name or w.name.endswith(".csv"):
            continue
        try:
            load_workload(w.name)
        except WorkloadError as exc:
            raise fail(f"workloads[{i}]: {exc}") from None
