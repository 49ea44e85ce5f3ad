import subprocess
import sys

from hwloop.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "hwloop" in capsys.readouterr().out


def test_unknown_command_is_a_one_line_error_with_exit_2():
    proc = subprocess.run([sys.executable, "-m", "hwloop", "frobnicate"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("hwloop: error:")


def test_doctor_lists_the_toolchain(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert "verilator" in out and "yosys" in out
    assert code in (0, 1)
