"""RTL cycles (co-simulated, bit-exact, including data movement) vs SCALE-Sim 3.0.0.

For each layer of a small GEMM suite on 8x8 and 16x16 arrays, OS and WS: hwloop's RTL cycles
(from the hardware cycle counter, DMA from external memory included), its analytical model, the
fold bound (array tiles x streaming length per tile) and SCALE-Sim's compute cycles (its
"Total Cycles"; it models no data movement). Goals (from FIELD.md): never more cycles than
SCALE-Sim; mean within 5% of the fold bound; 64x64x64 on 8x8 OS in <= 4,300 cycles.
"""

from __future__ import annotations

import math
import statistics
import time

from benchmarks.scalesim_runner import SCALESIM_VERSION, run_scalesim
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.workloads import Layer, Workload

SUITE: tuple[tuple[str, int, int, int], ...] = (
    ("gemm64", 64, 64, 64),
    ("gemm128", 128, 128, 128),
    ("odd", 100, 60, 70),
    ("dqn_conv2", 81, 64, 512),
    ("dqn_conv3", 49, 64, 576),
    ("mlp_fc2", 64, 256, 256),
    ("bert_head", 128, 128, 64),
    ("tall", 256, 16, 32),
)

CONFIGS = ((8, "os"), (8, "ws"), (16, "os"), (16, "ws"))


def fold_bound(rows: int, cols: int, dataflow: str, m: int, n: int, k: int) -> int:
    if dataflow == "os":
        return math.ceil(m / rows) * math.ceil(n / cols) * k
    return math.ceil(k / rows) * math.ceil(n / cols) * m


def measure(size: int, dataflow: str) -> dict:
    """RTL (simulated afresh) and model cycles of the suite on one array, in this process."""
    from hwloop.sim import evaluate
    from hwloop.sim.systolic.mapping import Gemm, Mapping
    from hwloop.sim.systolic.model import model_gemm

    workload = Workload("scalesim-suite", tuple(Layer(name=n, m=m, n=nn, k=k)
                                                for n, m, nn, k in SUITE))
    params = SystolicParams(rows=size, cols=size, dataflow=dataflow)
    result = evaluate(params, workload, fidelity="rtl", seed=1, reuse=False)
    assert result.bit_exact is True
    layers = {}
    for layer in result.layers:
        gemm = Gemm(m=layer.m, n=layer.n, k=layer.k)
        start = time.perf_counter()
        model = model_gemm(params, gemm, Mapping.from_dict(layer.mapping))
        model_s = time.perf_counter() - start
        layers[f"{layer.m}x{layer.n}x{layer.k}"] = {
            "cycles": layer.cycles, "model": model.cycles, "model_s": model_s,
            "moved": layer.actions.get("dram_read_bytes", 0)
            + layer.actions.get("dram_write_bytes", 0)}
    return {"wall": result.wall, "layers": layers}


def _measure_in_subprocess(size: int, dataflow: str) -> dict:
    """Each array in a fresh process: generator, harness and model read at the same moment."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; from benchmarks.bench_scalesim import measure; "
            "print(json.dumps(measure(int(sys.argv[1]), sys.argv[2])))")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(size), dataflow],
                          capture_output=True, text=True, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run() -> str:
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    lines = [
        "## RTL vs SCALE-Sim cycles",
        "",
        f"Hardware and runner at commit `{commit}`.",
        "",
        f"hwloop RTL (Verilator co-simulation, bit-exact against the golden GEMM, cycles from the "
        f"hardware counter including all DMA from external memory with latency 20 and a "
        f"16-byte bus) vs SCALE-Sim {SCALESIM_VERSION} compute cycles (no data movement). "
        "Bound = array tiles x streaming length (OS: ceil(M/R)ceil(N/C)K; WS: "
        "ceil(K/R)ceil(N/C)M). DMA bound = external-memory bytes the RTL moved (its "
        "counters) / bus bytes per cycle: a layer with a small K (OS) or M (WS) cannot stream "
        "faster than its data arrives. Model = hwloop's closed-form model.",
        "",
    ]
    all_ratios_bound: list[float] = []
    all_ratios_both: list[float] = []
    model_off: list[str] = []
    over_scalesim: list[str] = []
    speed_rows: list[str] = []
    g64 = None
    for size, dataflow in CONFIGS:
        params = SystolicParams(rows=size, cols=size, dataflow=dataflow)
        print(f"   {params.name}: RTL", flush=True)
        measured = _measure_in_subprocess(size, dataflow)
        wall = measured["wall"]
        print(f"   {params.name}: SCALE-Sim", flush=True)
        scalesim, _ = run_scalesim(list(SUITE), rows=size, cols=size, dataflow=dataflow)
        lines += [f"### {size}x{size} {dataflow.upper()} (build {wall['build_s']:.0f} s, "
                  f"simulate {wall['simulate_s']:.1f} s)", "",
                  "| layer | M x N x K | bound | DMA bound | SCALE-Sim | RTL | model | "
                  "RTL / SCALE-Sim | RTL / bound | RTL / max(bounds) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, m, n, k in SUITE:
            got = measured["layers"][f"{m}x{n}x{k}"]
            rtl_cycles, model_cycles = got["cycles"], got["model"]
            bound = fold_bound(size, size, dataflow, m, n, k)
            ss = scalesim[name][0]
            if model_cycles != rtl_cycles:
                model_off.append(f"{name} on {size}x{size} {dataflow} ({model_cycles} vs "
                                 f"{rtl_cycles})")
            ratio_bound = rtl_cycles / bound
            all_ratios_bound.append(ratio_bound)
            dma = math.ceil(got["moved"] / params.bus_bytes)
            ratio_both = rtl_cycles / max(bound, dma)
            all_ratios_both.append(ratio_both)
            if rtl_cycles > ss:
                over_scalesim.append(f"{name} on {size}x{size} {dataflow} "
                                     f"({rtl_cycles} > {ss})")
            if (m, n, k, size, dataflow) == (64, 64, 64, 8, "os"):
                g64 = rtl_cycles
            lines.append(f"| {name} | {m}x{n}x{k} | {bound:,} | {dma:,} | {ss:,} | "
                         f"{rtl_cycles:,} | {model_cycles:,} | {rtl_cycles / ss:.3f} | "
                         f"{ratio_bound:.3f} | {ratio_both:.3f} |")
            speed_rows.append((name, size, dataflow, got["model_s"]))
        lines.append("")
    print("   SCALE-Sim per-layer timing", flush=True)
    lines += ["### Speed: hwloop model vs SCALE-Sim per layer", "",
              "SCALE-Sim run alone per layer (one process each, wall time including its Python "
              "start-up and its per-cycle trace generation) vs one call of hwloop's "
              "`model_gemm` on the same layer.", "",
              "| layer | array | SCALE-Sim s | model ms | speed-up |", "|---|---|---:|---:|---:|"]
    for name, size, dataflow, model_s in speed_rows:
        if dataflow != "os":
            continue
        layer = next(x for x in SUITE if x[0] == name)
        _, wall = run_scalesim([layer], rows=size, cols=size, dataflow=dataflow)
        lines.append(f"| {name} | {size}x{size} os | {wall:.2f} | {model_s * 1e3:.2f} | "
                     f"{wall / max(model_s, 1e-9):,.0f}x |")
    commit_end = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
    if commit_end != commit:
        lines += ["", f"_The tree moved from `{commit}` to `{commit_end}` during this run (other "
                  "helpers commit to the same tree); each array was measured in one process "
                  "from one snapshot of the sources._"]
    mean_bound = statistics.mean(all_ratios_bound)
    lines += [
        "",
        "### Goals",
        "",
        "- never more cycles than SCALE-Sim: "
        + ("**met** (0 of "
           f"{len(all_ratios_bound)} layer runs over)" if not over_scalesim else
           f"**not met**: {len(over_scalesim)} of {len(all_ratios_bound)} over — "
           + "; ".join(over_scalesim)),
        f"- mean RTL / fold bound: {mean_bound:.3f} (goal <= 1.05: "
        f"{'**met**' if mean_bound <= 1.05 else '**not met**'}); worst "
        f"{max(all_ratios_bound):.3f}; against max(fold bound, DMA bound): mean "
        f"{statistics.mean(all_ratios_both):.3f}, worst {max(all_ratios_both):.3f}",
        "- model = RTL cycles: " + ("all layers" if not model_off else
                                    f"{len(model_off)} differ: " + "; ".join(model_off)),
        f"- 64x64x64 on 8x8 OS: {g64:,} cycles (goal <= 4,300: "
        f"{'**met**' if g64 is not None and g64 <= 4300 else '**not met**'}; SCALE-Sim 4,991, "
        "bound 4,096)",
    ]
    return "\n".join(lines)
