"""Area proxy: Yosys cell counts weighted by ``constraints/area.toml``, plus SRAM bits.

The generated Verilog is synthesized by YoWASP Yosys to generic gates *without flattening*
(``synth -noabc``, stopping before ``memory_map``): memories stay memories, counted as bits
(``memory_unpack`` turns them back into RTLIL memories so that ``stat`` reports their bits)
instead of being blown up into flops. ``stat -json`` gives hierarchical totals per cell type.
Each module is synthesized on its own, with the modules it instantiates as black boxes, and
cached by its text (the PEs, then the mesh), so a design whose array was synthesized before
(with other scratchpads or bus) only synthesizes the top.

Results are cached on disk (``$HWLOOP_CACHE/area/``) by the hash of the Verilog and the Yosys
version, and by the hash of the parameters and the generator source, so that model-fidelity
evaluations never run Yosys twice for the same design. ``AreaJob`` synthesizes a design in a
child process, so that ``evaluate`` can map, model or co-simulate it meanwhile.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hwloop import toolchain
from hwloop.errors import ConfigError, ToolchainError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.paths import cache_dir, scratch
from hwloop.sim.energy import CONSTRAINTS, read_toml

DEFAULT_TABLE = CONSTRAINTS / "area.toml"
SYNTH_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Synthesis:
    """What Yosys counted: leaf cells by type (hierarchical totals) and memory bits."""

    cell_counts: dict[str, int]
    memory_bits: int
    synth_s: float


@dataclass(frozen=True)
class AreaResult:
    area: float  # um^2 (see constraints/area.toml)
    area_cells: int  # leaf logic cells (gates + flops), memories excluded
    sram_bits: int
    cell_counts: dict[str, int]
    synth_s: float  # Yosys wall time (0.0 when cached)
    cached: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class AreaTable:
    cells: tuple[tuple[str, float], ...]
    sram_um2_per_bit: float

    def cell_area(self, cell_type: str) -> float:
        for pattern, weight in self.cells:
            if fnmatch.fnmatchcase(cell_type, pattern):
                return weight
        return 0.0


@functools.cache
def _load_table(path: str) -> AreaTable:
    file = Path(path)
    data = read_toml(file)
    cells = data.get("cells")
    if not isinstance(cells, dict) or not cells:
        raise ConfigError.at(file, None, "missing table [cells]")
    pairs = []
    for pattern, weight in cells.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                math.isfinite(weight) and weight >= 0):
            raise ConfigError.at(file, None,
                                 f"cells.{pattern} must be a non-negative number, not {weight!r}")
        pairs.append((pattern, float(weight)))
    sram = data.get("sram", {})
    per_bit = sram.get("um2_per_bit") if isinstance(sram, dict) else None
    if isinstance(per_bit, bool) or not isinstance(per_bit, (int, float)) or not (
            math.isfinite(per_bit) and per_bit >= 0):
        raise ConfigError.at(file, None,
                             f"sram.um2_per_bit must be a non-negative number, not {per_bit!r}")
    return AreaTable(tuple(pairs), float(per_bit))


def load_area_table(path: str | Path | None = None) -> AreaTable:
    return _load_table(str(Path(path) if path is not None else DEFAULT_TABLE))


#: An ``initial`` block that only fills memory words (Amaranth writes one for every memory, one
#: line per word). Initial contents do not change an SRAM's area, but Yosys spends minutes on a
#: large $meminit: such blocks are dropped before synthesis.
_MEMORY_INIT = re.compile(
    r"^[ \t]*initial begin\n(?:[ \t]*[\\\w$.]+\s*\[[^\]]+\]\s*=\s*[^;]+;\n)*[ \t]*end\n",
    re.M)


def strip_memory_init(verilog: str) -> str:
    return _MEMORY_INIT.sub("", verilog)


#: The synthesis of one module tree: generic gates, memories kept as memories
#: (``memory_unpack``) so that ``stat`` counts their bits.
SCRIPT = ("synth -top {top} -noabc -run begin:fine; "
          "opt -fast -full; memory_unpack; techmap; opt -fast; "
          "tee -q -o stat.json stat -json")
#: How a design is cut into syntheses; part of every cache key (see :func:`synthesize`).
SCHEME = "module-tree-1"

#: A module of Verilog as Yosys and Amaranth write it: attribute lines, ``module NAME (`` at the
#: start of a line, ``endmodule``.
_MODULE = re.compile(r"^((?:\(\*[^\n]*\*\)\n)*module \\?([^\s(]+)\s*\(.*?^endmodule\n)",
                     re.S | re.M)


#: The module name of an instance line (``  \\name  label (``); also matches some other
#: statements, whose first word is never a module's name.
_INSTANCE = re.compile(r"^\s+\\?([^\s(]+)\s+\S+\s*\(", re.M)

#: Names Yosys commands (``blackbox``, ``-top``) take as they are.
_PLAIN_NAME = re.compile(r"[\w.]+")


def _module_tree(verilog: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The modules of ``verilog`` (name -> text) and the modules each one instantiates."""
    modules = {name: text for text, name in _MODULE.findall(verilog)}
    uses = {name: sorted({used for used in _INSTANCE.findall(text)
                          if used in modules and used != name})
            for name, text in modules.items()}
    return modules, uses


def leaf_modules(verilog: str, top: str) -> dict[str, str]:
    """The modules of ``verilog`` other than ``top`` that instantiate no other module of it
    (and whose names Yosys commands take as they are): name -> text."""
    modules, uses = _module_tree(verilog)
    return {name: text for name, text in modules.items()
            if name != top and _PLAIN_NAME.fullmatch(name) and not uses[name]}


#: The name every leaf module is synthesized under: leaves that differ only in their names
#: (the PEs of a mesh) are one synthesis, kept in the cache for every design that has them.
LEAF = "hwloop_leaf"


#: An escaped identifier that a tool numbered (``\$auto$...$3``, ``\port$717$0``).
_NUMBERED = re.compile(r"\\\S*\$\S* ")


def anonymous(text: str, name: str) -> str:
    """Module text ``text`` of module ``name`` renamed to :data:`LEAF`, and its tool-numbered
    identifiers renumbered (:func:`renumbered`): identical PEs are one text."""
    return renumbered(re.sub(rf"^(module \\?){re.escape(name)}(?=[\s(])", rf"\g<1>{LEAF}",
                             text, count=1, flags=re.M))


def renumbered(text: str) -> str:
    """``text`` with its tool-numbered identifiers renumbered in order of appearance: Amaranth
    and Yosys number them across the whole design, so a module's text would otherwise change
    with every change elsewhere in the design."""
    names: dict[str, str] = {}
    return _NUMBERED.sub(lambda m: names.setdefault(m.group(0), f"\\n${len(names)} "), text)


def synthesize(verilog: str, top: str) -> Synthesis:
    """Run Yosys on ``verilog`` (top module ``top``) and count cells and memory bits.

    Every module under the top (whose name Yosys commands take as it is) is synthesized on its
    own, with the modules it instantiates as black boxes, whose instances then count their
    module's cells: the runs go in parallel, and each is cached by its text. A leaf module
    (the accelerator's PEs, most of its cells) is synthesized under one name
    (:func:`anonymous`): the PEs of a mesh are one synthesis, and designs with the same PE
    share it. The mesh is one more run, shared by designs that differ only around it. No run
    flattens, so each module is optimized on its own as in one run over the whole design.
    """
    verilog = strip_memory_init(verilog)
    start = time.perf_counter()
    modules, uses = _module_tree(verilog)
    own = {name for name in modules if name != top and _PLAIN_NAME.fullmatch(name)}
    # a module's run: its text, its own modules' as black boxes, and the texts of the other
    # modules it uses (named so that Yosys commands cannot take them: synthesized within it)
    runs: dict[str, tuple[str, str, tuple[str, ...]]] = {}  # module -> (text, top, black boxes)

    def inline(name: str, seen: set[str]) -> None:
        for used in uses[name]:
            if used not in seen:
                seen.add(used)
                if used not in own:
                    inline(used, seen)

    pending, reached = [top], {top}
    while pending:
        name = pending.pop()
        seen: set[str] = set()
        inline(name, seen)
        boxes = tuple(sorted(used for used in seen if used in own))
        if name in own and not uses[name]:
            runs[name] = (anonymous(modules[name], name), LEAF, ())
        else:
            text = "".join(modules[m] for m in [name, *sorted(seen)])
            runs[name] = (text if name == top else renumbered(text), name, boxes)
        for used in boxes:
            if used not in reached:
                reached.add(used)
                pending.append(used)
    with ThreadPoolExecutor(max_workers=2) as pool:  # Yosys runs in subprocesses
        futures = {}  # one per distinct run: the PEs of a mesh are one
        for name, run in runs.items():
            if run not in futures:
                futures[run] = pool.submit(_synthesize_run, *run, cache=name != top)
        parts = {name: futures[run].result() for name, run in runs.items()}

    totals: dict[str, tuple[dict[str, int], int]] = {}

    def total(name: str) -> tuple[dict[str, int], int]:
        """``name``'s cells and memory bits with those of the modules it instantiates."""
        if name not in totals:
            part = parts[name]
            counts: dict[str, int] = {}
            bits = part.memory_bits
            for cell, n in part.cell_counts.items():
                if cell in parts and cell != name:
                    sub_counts, sub_bits = total(cell)
                    for sub, m in sub_counts.items():
                        counts[sub] = counts.get(sub, 0) + n * m
                    bits += n * sub_bits
                else:
                    counts[cell] = counts.get(cell, 0) + n
            totals[name] = counts, bits
        return totals[name]

    counts, memory_bits = total(top)
    return Synthesis({t: n for t, n in counts.items() if t.startswith("$")}, memory_bits,
                     time.perf_counter() - start)


def _synthesize_run(text: str, top: str, blackboxes: tuple[str, ...], *,
                    cache: bool) -> Synthesis:
    """One module's synthesis (``text`` holds it and the modules it uses); cached by its text
    when ``cache`` (the whole design has a cache of its own: :func:`synthesize_cached`)."""
    if not cache:
        return _run_yosys(text, top, blackboxes=blackboxes)
    # a leaf's key is what it was before modules above the leaves were split off: the cached
    # PE syntheses stay valid
    parts = [toolchain.yosys_version(), SCRIPT, LEAF, text] if top == LEAF else \
        [toolchain.yosys_version(), SCRIPT, top, *blackboxes, text]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
    path = _cache_file("m", key)
    found = _read_cached(path)
    if found is None:
        found = _run_yosys(text, top, blackboxes=blackboxes)
        _write_cached(path, found)
    return found


def _run_yosys(verilog: str, top: str, *, blackboxes: tuple[str, ...] = ()) -> Synthesis:
    """One Yosys run; cell counts are the totals of the tree under ``top``, black-box
    instances included under their module's name."""
    # a script file: a 64x64 mesh's black boxes make a longer command than the OS allows
    script = "\n".join(["read_verilog -sv design.v", *(f"blackbox {n}" for n in blackboxes),
                         *SCRIPT.format(top=top).split("; ")]) + "\n"
    start = time.perf_counter()
    # a scratch folder, not a TemporaryDirectory: an AreaJob's child killed with its parent
    # (watch_parent) cannot clean up, and a later process reaps what it left
    with scratch("yosys") as folder:
        (folder / "design.v").write_text(verilog)
        (folder / "synth.ys").write_text(script)
        try:
            proc = subprocess.run([*toolchain.yosys_command(), "-q", "-s", "synth.ys"],
                                  cwd=folder, capture_output=True, text=True,
                                  timeout=SYNTH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ToolchainError(f"Yosys synthesis of {top} took over {SYNTH_TIMEOUT_S} s"
                                 ) from None
        stat_path = folder / "stat.json"
        if proc.returncode != 0 or not stat_path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ToolchainError(f"Yosys synthesis of {top} failed: {tail[0]}")
        stat = json.loads(stat_path.read_text())
    design = stat["design"]
    counts = {t.removeprefix("\\"): int(n)
              for t, n in design.get("num_cells_by_type", {}).items()}
    return Synthesis(counts, int(design.get("num_memory_bits", 0)),
                     time.perf_counter() - start)


def area_from_synthesis(synthesis: Synthesis, table: AreaTable | None = None, *,
                        cached: bool = False) -> AreaResult:
    table = table or load_area_table()
    logic = sum(table.cell_area(t) * n for t, n in synthesis.cell_counts.items())
    cells = sum(n for t, n in synthesis.cell_counts.items() if not t.startswith("$mem"))
    return AreaResult(
        area=logic + synthesis.memory_bits * table.sram_um2_per_bit,
        area_cells=cells,
        sram_bits=synthesis.memory_bits,
        cell_counts=dict(sorted(synthesis.cell_counts.items())),
        synth_s=0.0 if cached else synthesis.synth_s,
        cached=cached,
    )


def _cache_file(kind: str, key: str) -> Path:
    folder = cache_dir() / "area"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{kind}-{key}.json"


def _read_cached(path: Path) -> Synthesis | None:
    try:
        data = json.loads(path.read_text())
        return Synthesis({k: int(v) for k, v in data["cell_counts"].items()},
                         int(data["memory_bits"]), float(data["synth_s"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cached(path: Path, synthesis: Synthesis) -> None:
    # atomic: a concurrent reader never sees half a file
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(synthesis), handle)
    os.replace(tmp, path)


def synthesize_cached(verilog: str, top: str) -> tuple[Synthesis, bool]:
    """``synthesize`` through the on-disk cache keyed by Verilog text and Yosys version."""
    key = hashlib.sha256(
        f"{toolchain.yosys_version()}\0{SCHEME}\0{top}\0{verilog}".encode()).hexdigest()[:32]
    path = _cache_file("v", key)
    found = _read_cached(path)
    if found is not None:
        return replace(found, synth_s=0.0), True  # no Yosys time spent by this call
    synthesis = synthesize(verilog, top)
    _write_cached(path, synthesis)
    return synthesis, False


_MEMO: dict[str, AreaResult] = {}


def _params_cache_file(params: SystolicParams) -> tuple[str, Path]:
    from hwloop.hdl.systolic import generator_digest

    key = hashlib.sha256(json.dumps(
        [params.params_hash, generator_digest(), toolchain.yosys_version(), SCHEME]
    ).encode()).hexdigest()[:32]
    return key, _cache_file("p", key)


def cached_area(params: SystolicParams, *, table: AreaTable | None = None,
                fresh: bool = False) -> AreaResult | None:
    """The area proxy of ``params`` if it was synthesized before (in memory or on disk), else
    None. ``fresh``: the synthesis on disk has just been made (by an ``AreaJob``): report its
    Yosys time as spent."""
    return _cached_area(*_params_cache_file(params), table or load_area_table(), fresh=fresh)


def _cached_area(key: str, path: Path, table: AreaTable, *, fresh: bool) -> AreaResult | None:
    if key in _MEMO:
        return _as_cached(_MEMO[key], table)
    found = _read_cached(path)
    if found is None:
        return None
    # a child whose synthesis came from the Verilog-keyed cache recorded no Yosys time
    result = area_from_synthesis(found, table, cached=not (fresh and found.synth_s > 0))
    _MEMO[key] = result
    return result


def systolic_area(params: SystolicParams, *, table: AreaTable | None = None,
                  verilog: str | None = None) -> AreaResult:
    """The area proxy of the systolic accelerator ``params`` (cached in memory and on disk)."""
    table = table or load_area_table()
    key, path = _params_cache_file(params)
    found = _cached_area(key, path, table, fresh=False)
    if found is not None:
        return found
    if verilog is None:  # the same generation the RTL build uses (cached on disk, once)
        from hwloop.sim.systolic.rtl import cached_verilog

        verilog = cached_verilog(params)
    synthesis, cached = synthesize_cached(verilog, params.name)
    _write_cached(path, synthesis)
    result = area_from_synthesis(synthesis, table, cached=cached)
    _MEMO[key] = result
    return result


class AreaJob:
    """The area proxy of ``params``, synthesized in a child process (``python -m
    hwloop.sim.area``) on a core of its own while the caller builds, simulates or models the
    same design: generating the Verilog and running Yosys take seconds to minutes.

    ``result()`` waits for the child and reads what it left in the cache; a child that failed
    is repeated in this process, which raises its error. ``cancel()`` kills the child and its
    Yosys (a caller that fails early). A design synthesized before starts no child.
    """

    def __init__(self, params: SystolicParams) -> None:
        self._params = params
        self._result = cached_area(params)
        self._child: subprocess.Popen | None = None
        if self._result is None:
            # a session of its own: cancel() kills Yosys (a grandchild) with it. Group kills
            # aimed at this process (a timed-out sweep worker, the driver's kill -9) do not
            # reach that session, so the child watches its parent and kills its session when
            # the parent is gone (watch_parent)
            env = {**os.environ, PARENT_ENV: str(os.getpid())}
            self._child = subprocess.Popen(_area_command(params), stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, start_new_session=True,
                                           env=env)

    def result(self) -> AreaResult:
        if self._result is None:
            made = False
            if self._child is not None:
                made = self._child.wait() == 0
                self._child = None
            found = cached_area(self._params, fresh=True) if made else None
            self._result = found if found is not None else systolic_area(self._params)
        return self._result

    def cancel(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


PARENT_ENV = "HWLOOP_AREA_PARENT"
PARENT_POLL_S = 0.1


def watch_parent() -> None:
    """In an AreaJob's child: kill this process's session (the child and its Yosys) as soon
    as the AreaJob's process is gone. Polled, not prctl(PR_SET_PDEATHSIG): that would kill the
    child only, not its Yosys, and only on Linux."""
    parent = int(os.environ.get(PARENT_ENV, "0"))
    if not parent or os.getpgrp() != os.getpid():  # killpg(0) must hit this session only
        return

    def orphaned() -> bool:
        # compared with the pid, not 1: a subreaper (tini, systemd --user) adopts orphans
        return os.getppid() != parent

    def watch() -> None:
        while not orphaned():
            time.sleep(PARENT_POLL_S)
        os.killpg(0, signal.SIGKILL)

    if orphaned():  # the parent died before this child started watching
        os.killpg(0, signal.SIGKILL)
    threading.Thread(target=watch, daemon=True, name="hwloop-area-parent").start()


def _area_command(params: SystolicParams) -> list[str]:
    return [sys.executable, "-m", "hwloop.sim.area", json.dumps(params.to_dict())]


def _as_cached(result: AreaResult, table: AreaTable) -> AreaResult:
    synthesis = Synthesis(result.cell_counts, result.sram_bits, 0.0)
    return area_from_synthesis(synthesis, table, cached=True)


def weighted(cell_counts: Mapping[str, int], table: AreaTable | None = None) -> float:
    table = table or load_area_table()
    return sum(table.cell_area(t) * n for t, n in cell_counts.items())


if __name__ == "__main__":  # an AreaJob's child: synthesize one design into the cache
    watch_parent()
    systolic_area(SystolicParams.from_dict(json.loads(sys.argv[1])))
