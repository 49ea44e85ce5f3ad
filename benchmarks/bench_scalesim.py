"""RTL cycles (co-simulated, bit-exact, including data movement) vs SCALE-Sim 3.0.0.

For each layer of a small GEMM suite on 8x8 and 16x16 arrays, OS and WS: hwloop's RTL cycles
(from the hardware cycle counter, DMA from external memory included), its analytical model, the
fold bound (array tiles x streaming length per tile) and SCALE-Sim's compute cycles (its
"Total Cycles"; it models no data movement). Goals (from FIELD.md): never more cycles than
SCALE-Sim; mean within 5% of the fold bound; 64x64x64 on 8x8 OS in <= 4,300 cycles. The goals
are judged as before on designs writing back 32-bit sums, and once more on the same arrays
writing back int8 outputs (``out_bits=8``, the default shift per layer), as an inference
accelerator does. The designs have ``read_ahead`` (:data:`READ_AHEAD`): the generator's DMA
option that lets A loads finish under the next instruction.
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

#: (array size, dataflow, bus bytes per cycle). The goals are judged on a bus of R + C bytes per
#: cycle, the operand rate of a fully busy array without reuse (the default 16 on 8x8); 16x16 is
#: measured on the default 16-byte bus too, where moving a layer's bytes once can take longer
#: than SCALE-Sim's compute-only count.
CONFIGS = ((8, "os", 16), (8, "ws", 16), (16, "os", 32), (16, "ws", 32), (16, "os", 16),
           (16, "ws", 16))
#: The same arrays on a bus of R + C bytes, writing back int8 outputs (requantized sums).
INT8_CONFIGS = ((8, "os", 16), (8, "ws", 16), (16, "os", 32), (16, "ws", 32))
#: Every design's ``read_ahead``: the cycles are the generator's best (the option costs a few
#: registers, and a few percent of simulation speed, which benchmark 1 measures without it).
READ_AHEAD = True


def fold_bound(rows: int, cols: int, dataflow: str, m: int, n: int, k: int) -> int:
    if dataflow == "os":
        return math.ceil(m / rows) * math.ceil(n / cols) * k
    return math.ceil(k / rows) * math.ceil(n / cols) * m


def traffic_bound(m: int, n: int, k: int, bus: int, *, in_bytes: int = 1,
                  acc_bytes: int = 4) -> int:
    """Cycles to move every operand byte in and every result byte out once, on separate read and
    write paths of ``bus`` bytes per cycle: no schedule on this bus can be faster."""
    return max(math.ceil((m * k + k * n) * in_bytes / bus), math.ceil(m * n * acc_bytes / bus))


def measure(size: int, dataflow: str, bus: int = 16, out_bits: int | None = None) -> dict:
    """RTL (simulated afresh) and model cycles of the suite on one array, in this process."""
    from hwloop.sim import evaluate
    from hwloop.sim.systolic.mapping import Gemm, Mapping
    from hwloop.sim.systolic.model import model_gemm

    workload = Workload("scalesim-suite", tuple(Layer(name=n, m=m, n=nn, k=k)
                                                for n, m, nn, k in SUITE))
    params = SystolicParams(rows=size, cols=size, dataflow=dataflow, bus_bytes=bus,
                            out_bits=out_bits, read_ahead=READ_AHEAD)
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
            + layer.actions.get("dram_write_bytes", 0), "out_shift": layer.out_shift}
    return {"wall": result.wall, "layers": layers}


def _measure_in_subprocess(size: int, dataflow: str, bus: int, out_bits: int | None) -> dict:
    """Each array in a fresh process: generator, harness and model read at the same moment."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; from benchmarks.bench_scalesim import measure; "
            "out = None if sys.argv[4] == 'none' else int(sys.argv[4]); "
            "print(json.dumps(measure(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), out)))")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(size), dataflow,
                           str(bus), "none" if out_bits is None else str(out_bits)],
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
        f"hardware counter including all DMA from external memory with latency 20) vs SCALE-Sim "
        f"{SCALESIM_VERSION} compute cycles (no data movement). Bound = array tiles x streaming "
        "length (OS: ceil(M/R)ceil(N/C)K; WS: ceil(K/R)ceil(N/C)M). Traffic = the cycles to move "
        "A and B in and C (32-bit) out once each on separate read and write paths of the bus "
        "width: no schedule on that bus is faster. Model = hwloop's closed-form model. "
        "The goals are judged on a bus of R + C bytes per cycle (the operands a busy array "
        "takes per cycle without reuse: the default 16 bytes on 8x8, 32 on 16x16); 16x16 on the "
        "default 16-byte bus follows. Then the same arrays on R + C bytes writing back int8 "
        "outputs (`out_bits=8`: each sum requantized with the default shift of its layer, "
        "bit-exact against the golden requantization; C moves in 1-byte containers, and "
        "the traffic bound counts 1 byte per output). "
        + ("Every design has `read_ahead` (A loads may finish under the next instruction; "
           "designs without it differ only where an instruction's A load outlasts its "
           "compute: docs/systolic-hw.md)." if READ_AHEAD else ""),
        "",
    ]
    groups: dict[str, dict] = {
        "matched": {"bound": [], "macs": [], "over": [], "unattainable": [], "runs": 0},
        "default": {"bound": [], "macs": [], "over": [], "unattainable": [], "runs": 0},
        "int8": {"bound": [], "macs": [], "over": [], "unattainable": [], "runs": 0},
    }
    model_off: list[str] = []
    model_off_int8: list[str] = []
    g64_int8 = None
    speed_rows: list[tuple[str, int, str, float]] = []
    g64 = None
    scalesim_cache: dict[tuple[int, str], dict] = {}
    runs = [(size, dataflow, bus, None) for size, dataflow, bus in CONFIGS] \
        + [(size, dataflow, bus, 8) for size, dataflow, bus in INT8_CONFIGS]
    for size, dataflow, bus, out_bits in runs:
        int8 = out_bits is not None
        group = groups["int8" if int8 else "matched" if bus == 2 * size else "default"]
        params = SystolicParams(rows=size, cols=size, dataflow=dataflow, bus_bytes=bus,
                                out_bits=out_bits, read_ahead=READ_AHEAD)
        print(f"   {params.name} bus {bus}: RTL", flush=True)
        measured = _measure_in_subprocess(size, dataflow, bus, out_bits)
        wall = measured["wall"]
        if (size, dataflow) not in scalesim_cache:
            print(f"   {params.name}: SCALE-Sim", flush=True)
            scalesim_cache[size, dataflow] = run_scalesim(list(SUITE), rows=size, cols=size,
                                                          dataflow=dataflow)[0]
        scalesim = scalesim_cache[size, dataflow]
        lines += [f"### {size}x{size} {dataflow.upper()}, {bus}-byte bus"
                  + (", int8 write-back" if int8 else "") + " (build "
                  f"{wall['build_s']:.0f} s, simulate {wall['simulate_s']:.1f} s)", "",
                  "| layer | M x N x K | bound | traffic | SCALE-Sim | RTL | model | "
                  "RTL / SCALE-Sim | RTL / bound |" + (" shift |" if int8 else ""),
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if int8 else "")]
        for name, m, n, k in SUITE:
            got = measured["layers"][f"{m}x{n}x{k}"]
            rtl_cycles, model_cycles = got["cycles"], got["model"]
            bound = fold_bound(size, size, dataflow, m, n, k)
            traffic = traffic_bound(m, n, k, bus, acc_bytes=1 if int8 else 4)
            ss = scalesim[name][0]
            where = f"{name} on {size}x{size} {dataflow} bus {bus}" + (" int8" if int8 else "")
            if model_cycles != rtl_cycles:
                (model_off_int8 if int8 else model_off).append(
                    f"{where} ({model_cycles} vs {rtl_cycles})")
            group["bound"].append(rtl_cycles / bound)
            group["macs"].append(m * n * k)
            group["runs"] += 1
            if rtl_cycles > ss:
                group["over"].append(f"{where} ({rtl_cycles:,} > {ss:,})")
            if traffic > ss:
                group["unattainable"].append(f"{where} (traffic {traffic:,} > {ss:,})")
            if (m, n, k, size, dataflow) == (64, 64, 64, 8, "os"):
                if int8:
                    g64_int8 = rtl_cycles
                else:
                    g64 = rtl_cycles
            lines.append(f"| {name} | {m}x{n}x{k} | {bound:,} | {traffic:,} | {ss:,} | "
                         f"{rtl_cycles:,} | {model_cycles:,} | {rtl_cycles / ss:.3f} | "
                         f"{rtl_cycles / bound:.3f} |"
                         + (f" {got['out_shift']} |" if int8 else ""))
            if bus == 2 * size and not int8:
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
    matched, default, int8_group = groups["matched"], groups["default"], groups["int8"]
    mean_bound = statistics.mean(matched["bound"])
    big = [r for r, macs in zip(matched["bound"], matched["macs"], strict=True)
           if macs >= 1 << 20]
    mean_int8 = statistics.mean(int8_group["bound"])
    big_int8 = [r for r, macs in zip(int8_group["bound"], int8_group["macs"], strict=True)
                if macs >= 1 << 20]

    def over_text(group: dict) -> str:
        if not group["over"]:
            return f"**met** (0 of {group['runs']} layer runs over)"
        return (f"**not met**: {len(group['over'])} of {group['runs']} over — "
                + "; ".join(group["over"]))

    lines += [
        "",
        "### Goals",
        "",
        "- never more cycles than SCALE-Sim (bus R + C bytes): " + over_text(matched),
        f"- mean RTL / fold bound (bus R + C bytes): {mean_bound:.3f} (goal <= 1.05: "
        f"{'**met**' if mean_bound <= 1.05 else '**not met**'}); worst "
        f"{max(matched['bound']):.3f}; layers of at least 2^20 MACs: mean "
        f"{statistics.mean(big):.3f} over {len(big)} runs. The fold bound leaves out what "
        "every run pays once: the first operands' memory latency, the array's fill and "
        "drain, and the last results' store, which weigh most on the smallest layers.",
        "- 16x16 on the default 16-byte bus: " + over_text(default)
        + (f"; of these, {len(default['unattainable'])} cannot be met by any schedule on that "
           "bus (moving the bytes once takes longer than SCALE-Sim's count): "
           + "; ".join(default["unattainable"]) if default["unattainable"] else "")
        + f"; mean RTL / fold bound {statistics.mean(default['bound']):.3f}",
        "- model = RTL cycles: " + ("all layers" if not model_off else
                                    f"{len(model_off)} differ: " + "; ".join(model_off)),
        f"- 64x64x64 on 8x8 OS: {g64:,} cycles (goal <= 4,300: "
        f"{'**met**' if g64 is not None and g64 <= 4300 else '**not met**'}; SCALE-Sim 4,991, "
        "bound 4,096)",
        "",
        "Int8 write-back (`out_bits=8`, bus R + C bytes):",
        "",
        "- never more cycles than SCALE-Sim: " + over_text(int8_group),
        f"- mean RTL / fold bound: {mean_int8:.3f} (goal <= 1.05: "
        f"{'**met**' if mean_int8 <= 1.05 else '**not met**'}; 32-bit sums {mean_bound:.3f}); "
        f"worst {max(int8_group['bound']):.3f}; layers of at least 2^20 MACs: mean "
        f"{statistics.mean(big_int8):.3f} over {len(big_int8)} runs",
        "- model = RTL cycles: " + ("all layers" if not model_off_int8 else
                                    f"{len(model_off_int8)} differ: "
                                    + "; ".join(model_off_int8)),
        f"- 64x64x64 on 8x8 OS: {g64_int8:,} cycles (goal <= 4,300: "
        f"{'**met**' if g64_int8 is not None and g64_int8 <= 4300 else '**not met**'})",
    ]
    return "\n".join(lines)
