"""`hwloop sim cache`, `generate cache`, `generate prefetcher`: results and one-line errors."""

from __future__ import annotations

import hashlib
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


def test_seed_is_reported_for_the_random_policy_only(trace_file, tmp_path, capsys):
    base = ["--sets", "64", "--ways", "4", "--line-bytes", "64"]
    for policy, seed in (("lru", None), ("srrip", None), ("random", 5)):
        extra = ["--seed", "5"] if policy == "random" else []
        assert main(["sim", "cache", "--trace", str(trace_file), *base, "--policy", policy,
                     *extra, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["config"]["seed"] == seed
        out = tmp_path / policy
        assert main(["generate", "cache", *base, "--policy", policy, *extra, "-o",
                     str(out)]) == 0
        capsys.readouterr()
        assert json.loads((out / "manifest.json").read_text())["params"]["seed"] == seed


def test_tables_name_their_designs(tmp_path, capsys):
    """Two tables of one geometry make different Verilog: the design names differ by each
    table file's hash, and the manifest records the hashes."""
    names = {}
    for fill in (1, 2):
        table = tmp_path / f"t{fill}.npz"
        save_table(table, make_table(kind="replacement", entry_bits=3, history=0,
                                     values=np.full(256, fill, np.int64)))
        digest = hashlib.sha256(table.read_bytes()).hexdigest()
        out = tmp_path / f"out{fill}"
        assert main(["generate", "cache", "--sets", "16", "--ways", "4", "--line-bytes", "16",
                     "--policy", "table", "--table", str(table), "-o", str(out)]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["top"] == f"cache_16s4w16b_table_{digest[:8]}"
        assert manifest["tables"] == {"replacement": {"file": str(table), "sha256": digest}}
        assert (out / f"{manifest['top']}.v").exists()
        names[fill] = manifest["top"]
    assert names[1] != names[2]
    delta = tmp_path / "delta.npz"
    save_table(delta, make_table(kind="prefetch", entry_bits=6, history=0,
                                 values=np.zeros(64, np.int64),
                                 confidence=np.zeros(64, np.int64)))
    digest = hashlib.sha256(delta.read_bytes()).hexdigest()
    out = tmp_path / "pf"
    assert main(["generate", "prefetcher", "--kind", "table", "--table", str(delta), "-o",
                 str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["top"] == f"prefetcher_table_{digest[:8]}"
    assert manifest["tables"] == {"prefetch": {"file": str(delta), "sha256": digest}}
    capsys.readouterr()


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
    # the same layout as every generator's: ports with directions, the Verilog's hash, a core

    assert manifest["files"][0]["sha256"] == hashlib.sha256(verilog.encode()).hexdigest()
    direction = {p["name"]: p["direction"] for p in manifest["ports"]}
    assert direction["clk"] == direction["req_addr"] == "input"
    assert direction["resp_hit"] == "output"
    assert f"toplevel: {manifest['top']}" in (out / f"{manifest['top']}.core").read_text()


def test_generate_prefetcher_manifest_has_ports_and_core(tmp_path):
    out = tmp_path / "p"
    assert main(["generate", "prefetcher", "--kind", "nextline", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["top"] == "prefetcher_nextline" and manifest["line_bits"] > 0
    assert {p["direction"] for p in manifest["ports"]} == {"input", "output"}
    assert (out / "prefetcher_nextline.core").read_text().startswith("CAPI=2:")


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
    # the entries and line width that differ from the defaults are in the name
    assert "module prefetcher_stride_e64_lb26(" in (out / "prefetcher_stride_e64_lb26.v"
                                                    ).read_text()
    proc = _hwloop("generate", "prefetcher", "--kind", "markov", "-o", str(tmp_path / "q"))
    assert proc.returncode == 2
    assert proc.stderr == ("hwloop: error: unknown prefetcher 'markov' "
                           "(have nextline, stride, table)\n")
    assert not (tmp_path / "q").exists()


def test_generate_prefetcher_table_names_its_own_flag(tmp_path):
    proc = _hwloop("generate", "prefetcher", "--kind", "table", "-o", str(tmp_path / "pf"))
    assert proc.returncode == 2
    assert proc.stderr == "hwloop: error: prefetcher 'table' needs a table file (--table FILE)\n"
    assert list(tmp_path.iterdir()) == []


def _npy(path):
    with path.open("wb") as handle:
        np.save(handle, np.arange(3))


def _object_array_npz(path):
    np.savez(path, meta=np.array([{"format": "hwloop-table"}], dtype=object),
             values=np.arange(4))


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_bytes(bytes(range(256))), "not a table file (not an .npz archive)"),
    (lambda p: p.write_bytes(b""), "not a table file (not an .npz archive)"),
    (_npy, "not a table file (not an .npz archive)"),
    (_object_array_npz,
     "'meta' is an array of Python objects; a table file holds numbers and text"),
    (lambda p: np.savez(p, meta=np.array("{x"), values=np.arange(4)),
     "not an hwloop table ('meta' is not JSON)"),
])
def test_sim_cache_unreadable_table(trace_file, tmp_path, make, message):
    table = tmp_path / "junk.npz"
    make(table)
    proc = _hwloop("sim", "cache", "--trace", str(trace_file), "--sets", "64", "--ways", "4",
                   "--line-bytes", "64", "--policy", "table", "--table", str(table))
    assert proc.returncode == 2
    assert proc.stderr == f"hwloop: error: {table}: {message}\n"


SIM = ["--sets", "64", "--ways", "4", "--line-bytes", "64"]


@pytest.mark.parametrize(("args", "message"), [
    (["sim", "cache", *SIM, "--degree", "2"], "--degree needs --prefetcher"),
    (["sim", "cache", *SIM, "--latency", "2"], "--latency needs --prefetcher"),
    (["sim", "cache", *SIM, "--queue", "2"], "--queue needs --prefetcher"),
    (["sim", "cache", *SIM, "--entries", "64"], "--entries needs --prefetcher"),
    (["sim", "cache", *SIM, "--prefetcher", "nextline", "--entries", "64"],
     "--entries needs --prefetcher stride"),
    (["sim", "cache", *SIM, "--seed", "5", "--policy", "lru"], "--seed needs --policy random"),
    (["sim", "cache", *SIM, "--seed", "5"], "--seed needs --policy random"),
    (["generate", "cache", *SIM, "--degree", "2"], "--degree needs --prefetcher"),
    (["generate", "cache", *SIM, "--seed", "5", "--policy", "srrip"],
     "--seed needs --policy random"),
    (["generate", "prefetcher", "--kind", "nextline", "--entries", "64"],
     "--entries needs --kind stride"),
])
def test_options_without_effect_are_errors(trace_file, tmp_path, args, message):
    out = tmp_path / "out"
    extra = ["--trace", str(trace_file)] if args[0] == "sim" else ["-o", str(out)]
    proc = _hwloop(*args, *extra)
    assert proc.returncode == 2
    assert proc.stderr == f"hwloop: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_options_where_they_apply(trace_file, capsys):
    assert main(["sim", "cache", "--trace", str(trace_file), *SIM, "--policy", "random",
                 "--seed", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["seed"] == 7
    assert main(["sim", "cache", "--trace", str(trace_file), *SIM, "--prefetcher", "stride",
                 "--entries", "64", "--latency", "2", "--queue", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["seed"] is None  # lru: no seed has effect
    assert report["prefetcher"] == {"kind": "stride", "degree": 1, "latency": 2, "queue": 4,
                                    "entries": 64, "table": None}


def test_generate_cache_name_says_the_prefetcher(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["generate", "cache", "--sets", "64", "--ways", "8", "--line-bytes", "64",
                 "--prefetcher", "stride", "-o", str(out)]) == 0
    assert capsys.readouterr().out == (f"wrote {out}/cache_64s8w64b_lru_stride.v, "
                                       "manifest.json, cache_64s8w64b_lru_stride.core\n")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["top"] == "cache_64s8w64b_lru_stride"
    assert manifest["verilog"] == "cache_64s8w64b_lru_stride.v"
    assert "module cache_64s8w64b_lru_stride(" in (out / manifest["verilog"]).read_text()


def test_generate_prefetcher_help_describes_every_option():
    proc = _hwloop("generate", "prefetcher", "--help")
    assert proc.returncode == 0
    help_text = " ".join(proc.stdout.split())
    for text in ("--degree DEGREE lines per prediction (1..4, default 1)",
                 "--latency LATENCY fill latency in demand accesses (1..255, default 4)",
                 "--queue QUEUE request queue entries (1..16, default 8)",
                 "--entries ENTRIES stride table entries (--kind stride; power of two, "
                 "default 256)"):
        assert text in help_text


def test_entries_reported_for_stride_only_and_the_text_names_the_design(trace_file, tmp_path,
                                                                        capsys):
    assert main(["sim", "cache", "--trace", str(trace_file), *SIM, "--prefetcher", "nextline",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prefetcher"]["entries"] is None
    out = tmp_path / "pf"
    assert main(["generate", "prefetcher", "--kind", "nextline", "-o", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["params"]["entries"] is None
    table = tmp_path / "t.npz"
    save_table(table, make_table(kind="replacement", entry_bits=3, history=0,
                                 values=np.full(256, 1, np.int64)))
    digest = hashlib.sha256(table.read_bytes()).hexdigest()[:8]
    capsys.readouterr()
    assert main(["sim", "cache", "--trace", str(trace_file), *SIM, "--policy", "table",
                 "--table", str(table), "--prefetcher", "stride"]) == 0
    assert capsys.readouterr().out.startswith(
        f"cache_64s4w64b_table_{digest}_stride on {trace_file} (model): ")
