"""Running the hwloop CLI in-process from tests."""

from __future__ import annotations

from hwloop.cli import main


def run_main(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``hwloop argv`` in this process: (exit code, stdout, stderr); argparse exits count."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
