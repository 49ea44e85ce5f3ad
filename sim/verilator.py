"""Verilator for cocotb: :func:`build_verilated` (a cached build) and :func:`run_testbench`
(a cocotb test on a build), which every co-simulation (systolic harness, cache player,
benchmark baselines) goes through.

A build is kept in :class:`BuildCache` under its sources, top module, flags, make options, waves,
tool versions and the caller's extra key. The objects of the Verilator runtime library
(:data:`RUNTIME_OBJECTS`) are the same for every design built with the same flags and tools and
are most of a small design's compile time: the first build leaves them in the cache, later
builds copy them in.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from hwloop.buildcache import BuildCache, build_key
from hwloop.errors import BuildError, SimulationError
from hwloop.toolchain import (
    lz4_header,
    lz4_library,
    setup_verilator,
    tool_versions,
    verilator_root,
)

#: C++ optimization of the verilated model: verilated.mk's default is ``-Os``; ``-O2`` runs the
#: 8x8 array about 1.4x faster for ~20 s more compile time.
MAKE_OPT = ("OPT_FAST=-O2", "OPT_GLOBAL=-O2", "OPT_SLOW=-O1")

#: Objects of the Verilator runtime library that every build compiles from the same sources
#: with the same flags. Their dependency files name no generated header, so they are compiled
#: once per flags and tools, kept in the build cache and copied into each new build, where make
#: finds them up to date. (cocotb's ``verilator.o`` includes the design's ``Vtop.h``: it is
#: compiled with the design.)
RUNTIME_OBJECTS = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_timing",
                   "verilated_threads")

#: The simulator main for designs whose clock the simulator drives (``clock=`` of
#: :func:`build_verilated`): the clock toggles in C++ instead of through Verilator's ``--timing``
#: scheduler or a cocotb ``Clock``, and cocotb still sees every edge it waits for.
CLOCKED_MAIN = Path(__file__).with_name("clocked_main.cpp")
#: Half the clock period of a clocked main, in the builds' time precision (1 ps): 10 ns cycles.
HALF_PERIOD_PS = 5000
#: Sign extension as a shift pair for the generated model (``fast_extends=`` of
#: :func:`build_verilated`): see the header.
FAST_EXTENDS = Path(__file__).with_name("verilated_extends.h")
#: How a build includes :data:`FAST_EXTENDS`: a ``verilated.h`` of its own, in a folder that
#: ``-iquote`` searches before Verilator's include folder for every quoted include of
#: ``verilated.h`` (the generated files', their precompiled header's, the main's), which
#: includes Verilator's and then the faster forms. (``g++ -include`` would have to come first
#: on the command line, and a forced include before the precompiled header of a multi-file
#: build, as Verilator makes for larger designs, keeps g++ from using it.)
VERILATED_WRAPPER = """\
// hwloop: Verilator's verilated.h, then the faster forms of verilated_extends.h
#ifndef HWLOOP_VERILATED_WRAPPER_H_
#define HWLOOP_VERILATED_WRAPPER_H_
#include_next "verilated.h"
#include "verilated_extends.h"
#endif  // HWLOOP_VERILATED_WRAPPER_H_
"""
#: The folder beside ``obj/`` that holds the wrapper and :data:`FAST_EXTENDS`.
FAST_EXTENDS_FOLDER = "fast_extends"

#: Verilator's FST writer compresses with lz4: it includes ``lz4.h`` and links ``-llz4``.
#: Most systems have lz4's shared library (liblz4.so.1: systemd and apt use it) but not its
#: development files. For those a wave build gets, in this folder beside ``obj/``, a header
#: declaring the two functions the writer calls (lz4's stable API since 1.7) and a
#: ``liblz4.so`` that is a linker script naming the runtime library.
LZ4_FOLDER = "lz4"
LZ4_HEADER = """\
/* hwloop: the lz4 functions Verilator's FST writer calls, for a system that has lz4's shared
   library but not its headers. */
#ifndef HWLOOP_LZ4_H_
#define HWLOOP_LZ4_H_
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char* src, char* dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
#endif  /* HWLOOP_LZ4_H_ */
"""


def runner(*, public_flat_rw: bool = False, make_opt: Sequence[str] = MAKE_OPT,
           fresh: Sequence[Path] = (), main: Path | None = None):
    """cocotb's Verilator runner; without ``public_flat_rw`` it drops cocotb's global
    ``--public-flat-rw`` (which keeps Verilator from optimizing: a control file names the
    public signals instead). ``fresh``: files that make must find newer than the makefiles
    Verilator writes (the runtime objects copied from the cache), touched between verilating
    and make. ``main``: a C++ main in place of cocotb's."""
    from cocotb_tools.runner import Verilator

    class _Runner(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            if not public_flat_rw:
                cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
            if main is not None:
                cocotb_main = [arg for arg in cmds[0] if arg.endswith("verilator/verilator.cpp")]
                if len(cocotb_main) != 1:
                    raise BuildError(f"cannot find cocotb's Verilator main in its build "
                                     f"command to replace it with {main.name}")
                cmds[0] = [str(main) if arg in cocotb_main else arg for arg in cmds[0]]
            cmds[1] = [*cmds[1], *make_opt]
            if fresh:
                cmds.insert(1, ["touch", "-c", *map(str, fresh)])
            return cmds

    return _Runner()


def public_vlt(top: str, names: Sequence[str]) -> str:
    """A Verilator control file that makes only ``names`` of module ``top`` visible to cocotb."""
    return "`verilator_config\n" + "".join(
        f'public_flat_rw -module "{top}" -var "{name}"\n' for name in names)


@functools.cache
def _compiler_version() -> str:
    try:
        out = subprocess.run(["c++", "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def _runtime_files(folder: Path) -> list[Path]:
    """The runtime's objects and dependency files in ``folder`` (``--timing`` builds have one
    more)."""
    return [path for name in RUNTIME_OBJECTS if (folder / f"{name}.o").exists()
            for path in (folder / f"{name}.o", folder / f"{name}.d")]


def _copy_runtime(source: Path, target: Path) -> list[Path]:
    """Copy the runtime's objects and dependency files from ``source`` to ``target``."""
    return [Path(shutil.copy(path, target / path.name)) for path in _runtime_files(source)]


def build_verilated(*, label: str, sources: dict[str, str], top: str, flags: Sequence[str],
                    extra: dict[str, object], waves: bool = False,
                    public_flat_rw: bool = False, make_opt: Sequence[str] = MAKE_OPT,
                    clock: str | None = None, fast_extends: bool = False) -> tuple[Path, bool]:
    """A cocotb-ready Verilator build of ``sources`` (name -> text; ``.vlt`` = control file).

    Cached under the sources, ``top``, ``flags``, ``make_opt``, ``waves``, the tool versions
    and ``extra``; returns ``(folder, built)``; the model is in ``folder / "obj"``.
    ``public_flat_rw``: keep cocotb's global ``--public-flat-rw`` (every signal visible, less
    optimized). ``clock``: the top's clock input, driven by :data:`CLOCKED_MAIN` (10 ns cycles,
    low at time 0) instead of by the testbench. ``fast_extends``: compile with
    :data:`FAST_EXTENDS` (faster signed arithmetic). The runtime's objects come from the cache
    too.
    """
    main = None
    if clock is not None:
        main = CLOCKED_MAIN
        flags = [*flags, "-CFLAGS", f"-DHWLOOP_CLOCK={clock}",
                 "-CFLAGS", f"-DHWLOOP_HALF_PERIOD={HALF_PERIOD_PS}ULL"]
    if fast_extends:
        # copied beside obj/ (make compiles there), so the flags, and with them the keys of
        # the build and of the runtime objects, name its text and not this checkout's path
        digest = hashlib.sha256(VERILATED_WRAPPER.encode()
                                + FAST_EXTENDS.read_bytes()).hexdigest()[:16]
        flags = [*flags, "-CFLAGS", f"-iquote../{FAST_EXTENDS_FOLDER}",
                 "-CFLAGS", f"-DHWLOOP_FAST_EXTENDS={digest}"]
    # without lz4's headers, with its library (with neither the build fails and says so)
    lz4_runtime = lz4_library() if waves and lz4_header() is None else None
    if lz4_runtime is not None:
        flags = [*flags, "-CFLAGS", f"-I../{LZ4_FOLDER}", "-LDFLAGS", f"-L../{LZ4_FOLDER}"]
    options = [*flags, *make_opt, *(["--public-flat-rw"] if public_flat_rw else [])]
    # the top module and waves (cocotb's trace options) change the model as the flags do
    build_extra = {"caller": extra, "top": top, "waves": waves,
                   "main": None if main is None else main.read_text()}
    key = build_key(sources=sources, flags=options, tools=tool_versions(), extra=build_extra)
    cache = BuildCache()
    runtime_key = build_key(sources={}, flags=options, tools=tool_versions(),
                            extra={"what": "verilated-runtime", "waves": waves,
                                   "verilator_root": str(verilator_root()),
                                   "compiler": _compiler_version()})

    def build(folder: Path) -> None:
        from cocotb_tools.runner import VerilatorControlFile

        setup_verilator()
        for name, text in sources.items():
            (folder / name).write_text(text)
        if fast_extends:
            (folder / FAST_EXTENDS_FOLDER).mkdir()
            shutil.copyfile(FAST_EXTENDS, folder / FAST_EXTENDS_FOLDER / FAST_EXTENDS.name)
            (folder / FAST_EXTENDS_FOLDER / "verilated.h").write_text(VERILATED_WRAPPER)
        if lz4_runtime is not None:
            (folder / LZ4_FOLDER).mkdir()
            (folder / LZ4_FOLDER / "lz4.h").write_text(LZ4_HEADER)
            (folder / LZ4_FOLDER / "liblz4.so").write_text(f"INPUT(-l:{lz4_runtime})\n")
        obj = folder / "obj"
        fresh: list[Path] = []
        if cache.has(runtime_key):
            obj.mkdir()
            fresh = [p for p in _copy_runtime(cache.path(runtime_key), obj) if p.suffix == ".o"]
        # control files first: they must be read before the modules they configure
        files = [VerilatorControlFile(folder / n) for n in sources if n.endswith(".vlt")]
        files += [folder / n for n in sources if not n.endswith(".vlt")]
        log = folder / "build.log"
        try:
            runner(public_flat_rw=public_flat_rw, make_opt=make_opt, fresh=fresh,
                   main=main).build(
                sources=files, hdl_toplevel=top, build_dir=obj, build_args=list(flags),
                timescale=("1ns", "1ps"), waves=waves, log_file=log)
        except (SystemExit, Exception) as exc:
            kept = Path(tempfile.mkdtemp(prefix="hwloop-build-")) / "build.log"
            hint = ""
            if log.exists():
                shutil.copy(log, kept)
                if waves and "lz4.h" in log.read_text(errors="replace"):
                    hint = "; FST waves need lz4: apt-get install liblz4-dev"
            raise BuildError(f"Verilator build of {label} failed ({exc}{hint}; log: {kept})",
                             log_path=kept) from None
        if _runtime_files(obj):  # kept once per runtime key
            cache.get_or_build(runtime_key, functools.partial(_copy_runtime, obj))

    return cache.get_or_build(key, build)


def run_testbench(build: Path, *, top: str, testbench: Path, module: str, work: Path,
                  env: dict[str, str], log: Path, waves: bool = False) -> float:
    """Run the cocotb test file ``testbench`` (as top-level ``module``) on a built model.

    The test file is copied into ``work`` and imported from there: importing it from a package
    would load that package (numpy, Amaranth, ...) into the simulator, about a second of
    start-up per run; pytest's assertion rewriting is off for the same reason. Returns the wall
    seconds of the simulator process; the test reports its results through files it writes.
    """
    setup_verilator()
    shutil.copyfile(testbench, work / f"{module}.py")
    began = time.perf_counter()
    try:
        runner().test(test_module=module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                       build_dir=build / "obj", test_dir=work, waves=waves,
                       timescale=("1ns", "1ps"),
                       extra_env={**env, "COCOTB_REWRITE_ASSERTION_FILES": "",
                                  "PYTHONPATH": ":".join([str(work),
                                                          *(x for x in sys.path if x)])},
                       log_file=log)
    except SystemExit:
        pass
    except OSError as exc:  # the simulator cannot be started: its build in the cache is damaged
        raise SimulationError(
            f"cannot run the simulator {exc.filename or build / 'obj'}: "
            f"{exc.strerror or exc}; its build may be damaged: remove {build} (a cached build) "
            "and run again") from None
    return time.perf_counter() - began
