"""``hwloop doctor`` and ``hwloop regress``."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from hwloop import toolchain


def register(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser("doctor", help="check every tool hwloop uses")
    doctor.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    table = Table(title="hwloop doctor")
    table.add_column("tool")
    table.add_column("version / path")
    table.add_column("status")
    table.add_column("fix")
    statuses = toolchain.doctor()
    for status in statuses:
        table.add_row(status.name, status.version or "-",
                      "[green]ok[/green]" if status.ok else "[red]missing[/red]", status.fix)
    Console().print(table)
    return 0 if all(s.ok for s in statuses) else 1
