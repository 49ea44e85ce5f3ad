"""The ``hwloop`` command line.

Each area owns one module that adds its commands to the shared parser:

- ``hwloop.cli.systolic``  — ``generate systolic``, ``sim systolic``
- ``hwloop.cli.compile``   — ``compile systolic`` (program and memory images of a GEMM)
- ``hwloop.cli.cache``     — ``generate cache``, ``generate prefetcher``, ``sim cache``
- ``hwloop.cli.trace``     — ``trace capture|import|export|info``
- ``hwloop.cli.search``    — ``sweep``, ``db``, ``report``, ``best``
- ``hwloop.cli.tools``     — ``doctor``, ``regress``

A module defines any of ``register_generate(sub)``, ``register_sim(sub)`` (targets under the
``generate`` and ``sim`` groups) and ``register(sub)`` (top-level commands). Every parser it adds
sets ``func``: a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from hwloop import __version__
from hwloop.errors import HwloopError, HwloopWarning

COMMAND_MODULES = (
    "hwloop.cli.systolic",
    "hwloop.cli.compile",
    "hwloop.cli.cache",
    "hwloop.cli.trace",
    "hwloop.cli.search",
    "hwloop.cli.tools",
)


def stdout_console():  # -> rich.console.Console (rich is imported when output is made)
    """rich output on stdout: a terminal's own width, or a wide page when the output is piped
    or logged, where rich would assume 80 columns and cut the numbers of wide tables."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def working(message: str):  # -> a context manager
    """A spinner with ``message`` on stderr while a long step runs, when stderr is a terminal
    (it leaves nothing behind); nothing otherwise."""
    import contextlib

    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message)


def path_arg(text: str) -> Path:
    """argparse ``type`` of a path option: an empty one is an error naming the option (as a
    ``Path`` it would be ``.``, the current folder, and errors would name ``.``)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def path_text(text: str) -> str:
    """:func:`path_arg` for options kept as text."""
    path_arg(text)
    return text


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line and exit code 2 (argparse's own code)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hwloop", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Hardware-in-the-loop RTL generation, co-simulation and design-space "
                    "search.",
        epilog="first steps:\n"
               "  hwloop doctor                                  the tools, and fixes\n"
               "  hwloop sim systolic --workload dqn --first 3   RTL co-simulation, bit-exact\n"
               "  hwloop sweep --space constraints/demo.toml --budget 6   (in the repository)\n"
               "\n'hwloop COMMAND --help' for each command; docs/ for the rest.")
    parser.add_argument("--version", action="version", version=f"hwloop {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    generate = commands.add_parser("generate", help="emit Verilog for a generator")
    generate_targets = generate.add_subparsers(dest="target", metavar="GENERATOR",
                                               parser_class=_Parser)
    generate_targets.required = True
    sim = commands.add_parser("sim", help="co-simulate a design (RTL) or evaluate its model")
    sim_targets = sim.add_subparsers(dest="target", metavar="DESIGN", parser_class=_Parser)
    sim_targets.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "register_generate"):
            module.register_generate(generate_targets)
        if hasattr(module, "register_sim"):
            module.register_sim(sim_targets)
        if hasattr(module, "register"):
            module.register(commands)
    return parser


def _one_line_warnings(show):  # noqa: ANN001, ANN202
    """``warnings.showwarning`` that prints hwloop's own warnings as one line, like its errors
    (Python's default is two lines that name a source line), and passes others to ``show``."""
    def show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if issubclass(category, HwloopWarning):
            print(f"hwloop: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return show_warning


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)  # imports every command's module: Ctrl-C too
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except HwloopError as exc:
        print(f"hwloop: error: {exc}", file=sys.stderr)
        log_path = getattr(exc, "log_path", None)
        if log_path:
            print(f"hwloop: log: {log_path}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hwloop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped early (| head): not an error
        # the interpreter's last flush of stdout would fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # a full disk, under stdout or a file being written (which is left untouched: every
        # output is written aside and renamed into place)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"hwloop: error: {where}cannot write: {exc.strerror}", file=sys.stderr)
        with contextlib.suppress(OSError, ValueError):  # the last flush of stdout would fail
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
