"""The hwloop error hierarchy.

Every error a user can cause by what they type or write (CLI arguments, TOML, CSV, traces,
tables) is an :class:`InputError`: the CLI prints its one-line message and exits with code 2.
Errors of the tools underneath (a Verilator build that fails, a hung simulation) are not the
user's input and exit with code 1.
"""

from __future__ import annotations

from pathlib import Path


class HwloopError(Exception):
    """Base class of every error hwloop raises on purpose."""

    exit_code = 1


class HwloopWarning(UserWarning):
    """Base class of hwloop's warnings: something was left out of a result, which still
    stands (the command line prints them as ``hwloop: warning: ...``)."""


class InputError(HwloopError, ValueError):
    """Bad user input. The message is one line and names the culprit (parameter or file:line)."""

    exit_code = 2


class ParameterError(InputError):
    """A generator, mapping or CLI parameter is out of its legal range."""


class ConfigError(InputError):
    """A configuration file (TOML, YAML, CSV, table) is malformed.

    Build it with :meth:`at` so the message starts with ``file:line``.
    """

    @classmethod
    def at(cls, path: str | Path, line: int | None, message: str) -> ConfigError:
        where = f"{path}:{line}" if line is not None else f"{path}"
        return cls(f"{where}: {message}")


class WorkloadError(InputError):
    """A workload name, file or module that cannot be turned into layers."""


class TraceError(InputError):
    """A memory trace that is missing, truncated, corrupt or of the wrong format."""


class ToolchainError(HwloopError):
    """A required external tool (Verilator, Yosys, valgrind, a compiler) is missing or broken."""


class BuildError(HwloopError):
    """A Verilator (or other) build failed. ``log_path`` holds the full log."""

    def __init__(self, message: str, *, log_path: Path | None = None):
        super().__init__(message)
        self.log_path = log_path


class SimulationError(HwloopError):
    """A simulation failed or produced results that do not match the golden model."""

    def __init__(self, message: str, *, log_path: Path | None = None):
        super().__init__(message)
        self.log_path = log_path


class SimulationTimeout(SimulationError):
    """A simulation did not finish within its time limit."""


def check_seed(seed: object, *, name: str = "seed") -> None:
    """A random seed is a non-negative integer (numpy's generators refuse others with a
    traceback); ``name`` is what the message calls it (``--seed`` on the command line)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"{name} must be a non-negative integer, not {seed!r}")
