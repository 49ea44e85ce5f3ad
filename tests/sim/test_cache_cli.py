"""`hwloop sim cache`, `generate cache`, `generate prefetcher`: results and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hwloop.cli import main
from hwloop.hdl.cache.table import make_table, save_table
from hwloop.traces import write_trace

from .test_cache_support import adversarial


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "mix.trace"
    write_trace(path, adversarial(20_000, seed=99, sets=64, line_bytes=64))
    return path


def _hwloop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwloop", *args], capture_output=True,
                          text=True)


def test_sim_cache_model_json(trace_file, capsys):
    code = main(["sim", "cache", "--trace", str(trace_file), "--sets", "64", "--ways", "4",
                 "--line-bytes", "64", "--policy", "srrip", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["accesses"] == 20_000
    assert report["hits"] + report["misses"] == 20_000
    assert report["hit_rate"] == pytest.approx(report["hits"] / 20_000)
    assert "prefetch_issued" not in report


def test_sim_cache_opt_beats_lru(trace_file, capsys):
    rates = {}
    for policy in ("lru", "opt"):
        main(["sim", "cache", "--trace", str(trace_file), "--sets", "64", "--ways", "4",
              "--line-bytes", "64", "--policy", policy, "--json"])
        rates[policy] = json.loads(capsys.readouterr().out)["hit_rate"]
    assert rates["opt"] > rates["lru"]


def test_sim_cache_with_prefetcher_reports_accuracy_and_coverage(trace_file, capsys):
    code = main(["sim", "cache", "--trace", str(trace_file), "--sets", "64", "--ways", "4",
                 "--line-bytes", "64", "--prefetcher", "nextline", "--degree", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["prefetch_issued"] > 0
    assert report["accuracy"] == pytest.approx(report["prefetch_useful"]
                                               / report["prefetch_issued"])
    base = report["misses_without_prefetcher"]
    assert report["coverage"] == pytest.approx((base - report["misses"]) / base)


@pytest.mark.parametrize(("args", "message"), [
    (["--sets", "48", "--ways", "4", "--line-bytes", "64"],
     "sets must be a power of two, not 48"),
    (["--sets", "64", "--ways", "0", "--line-bytes", "64"],
     "ways must be an integer in 1..64, not 0"),
    (["--sets", "64", "--ways", "4", "--line-bytes", "24"],
     "line_bytes must be a power of two, not 24"),
    (["--sets", "64", "--ways", "4", "--line-bytes", "64", "--policy", "mru"],
     "unknown policy 'mru' (have lru, plru, srrip, random, table, opt)"),
    (["--sets", "64", "--ways", "4", "--line-bytes", "64", "--policy", "opt",
      "--fidelity", "rtl"],
     "policy 'opt' (Belady) exists only in the model: use --fidelity model"),
])
def test_sim_cache_bad_parameters(trace_file, args, message):
    proc = _hwloop("sim", "cache", "--trace", str(trace_file), *args)
    assert proc.returncode == 2
    assert proc.stderr == f"hwloop: error: {message}\n"


def test_sim_cache_truncated_trace(trace_file, tmp_path):
    bad = tmp_path / "cut.trace"
    bad.write_bytes(trace_file.read_bytes()[:-100])
    proc = _hwloop("sim", "cache", "--trace", str(bad), "--sets", "64", "--ways", "4",
                   "--line-bytes", "64")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hwloop: error: {bad}")


def test_sim_cache_table_for_another_use(trace_file, tmp_path):
    table = tmp_path / "delta.npz"
    save_table(table, make_table(kind="prefetch", entry_bits=6, history=0,
                                 values=np.zeros(16, np.int64),
                                 confidence=np.zeros(16, np.int64)))
    proc = _hwloop("sim", "cache", "--trace", str(trace_file), "--sets", "64", "--ways", "4",
                   "--line-bytes", "64", "--policy", "table", "--table", str(table))
    assert proc.returncode == 2
    assert proc.stderr == (f"hwloop: error: {table}: is a prefetch table, "
                           "need a replacement table\n")


def test_generate_cache_writes_verilog_and_manifest(tmp_path):
    out = tmp_path / "c"
    code = main(["generate", "cache", "--sets", "16", "--ways", "4", "--line-bytes", "32",
                 "--policy", "plru", "--addr-bits", "32", "-o", str(out)])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["policy"] == "plru"
    assert manifest["derived"]["tag_bits"] == 32 - 4 - 5
    verilog = (out / manifest["verilog"]).read_text()
    assert f"module {manifest['top']}" in verilog and "resp_hit" in verilog


def test_generate_cache_error_leaves_nothing(tmp_path):
    out = tmp_path / "c"
    proc = _hwloop("generate", "cache", "--sets", "48", "--ways", "4", "--line-bytes", "32",
                   "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr == "hwloop: error: sets must be a power of two, not 48\n"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_generate_prefetcher(tmp_path):
    out = tmp_path / "p"
    assert main(["generate", "prefetcher", "--kind", "stride", "--entries", "64",
                 "--line-bits", "26", "-o", str(out)]) == 0
    assert "module prefetcher_stride" in (out / "prefetcher_stride.v").read_text()
    proc = _hwloop("generate", "prefetcher", "--kind", "markov", "-o", str(tmp_path / "q"))
    assert proc.returncode == 2
    assert proc.stderr == ("hwloop: error: unknown prefetcher 'markov' "
                           "(have nextline, stride, table)\n")
    assert not (tmp_path / "q").exists()
