"""Analytical model vs RTL: cycle error and time per layer."""

from __future__ import annotations

import time

import numpy as np

from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.golden import gemm_golden, random_operands
from hwloop.sim.systolic.mapping import Gemm, default_mapping
from hwloop.sim.systolic.model import model_gemm
from hwloop.sim.systolic.rtl import RtlSimulator

LAYERS = (
    ("square 64", Gemm(m=64, n=64, k=64)),
    ("odd", Gemm(m=37, n=51, k=93)),
    ("conv 14x14 3x3x64->128", Gemm(m=196, n=128, k=576)),
    ("fc 1x1024->1000", Gemm(m=1, n=1000, k=1024)),
    ("attention 128x64x128", Gemm(m=128, n=128, k=64)),
    ("ffn slice 64x768x256", Gemm(m=64, n=256, k=768)),
)
DESIGNS = (SystolicParams(rows=8, cols=8, dataflow="os"),
           SystolicParams(rows=8, cols=8, dataflow="ws"))
#: model calls per layer; the fastest is reported
MODEL_REPEATS = 5


def run() -> str:
    lines = [
        "## Analytical model vs RTL",
        "",
        "The model (`hwloop.sim.systolic.model.model_gemm`) walks the same instruction program",
        "the RTL runs; cycles from the RTL are its hardware cycle counter, start to done,",
        "including all data movement. Mapping: `default_mapping`. Goal: error <= 1%.",
        "",
        "Fold bound = array tiles x stream length; SCALE-Sim = its compute-only cycle count",
        "(FIELD.md formula: per fold os T+R+C-2, ws 2R+C+T-2, folds in sequence, minus 1).",
        "",
        "| design | layer | m x n x k | RTL cycles | model cycles | error | fold bound | "
        "RTL / bound | SCALE-Sim | RTL / SCALE-Sim | RTL s/layer | model ms/layer | bit-exact |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    errors: list[float] = []
    ratios: list[float] = []
    vs_scalesim: list[float] = []
    rtl_times: list[float] = []
    model_times: list[float] = []
    for params in DESIGNS:
        sim = RtlSimulator(params)
        sim.build()
        rng = np.random.default_rng(11)
        jobs = []
        for _, gemm in LAYERS:
            a, b = random_operands(gemm, in_bits=params.in_bits, rng=rng)
            jobs.append((gemm, default_mapping(params, gemm), a, b))
        runs = sim.run(jobs)
        for (label, gemm), (_, mapping, a, b), rtl in zip(LAYERS, jobs, runs, strict=True):
            model_s = float("inf")
            for _ in range(MODEL_REPEATS):  # the fastest call: the machine is shared
                start = time.perf_counter()
                model = model_gemm(params, gemm, mapping)
                model_s = min(model_s, time.perf_counter() - start)
            error = abs(model.cycles - rtl.cycles) / rtl.cycles
            exact = np.array_equal(rtl.c, gemm_golden(a, b, acc_bits=params.acc_bits))
            R, C = params.rows, params.cols
            if params.dataflow == "os":
                folds, stream = -(-gemm.m // R) * -(-gemm.n // C), gemm.k
                scalesim = folds * (stream + R + C - 2) - 1
            else:
                folds, stream = -(-gemm.k // R) * -(-gemm.n // C), gemm.m
                scalesim = folds * (2 * R + C + stream - 2) - 1
            bound = folds * stream
            ratios.append(rtl.cycles / bound)
            vs_scalesim.append(rtl.cycles / scalesim)
            errors.append(error)
            rtl_times.append(rtl.sim_s)
            model_times.append(model_s)
            lines.append(
                f"| {params.name} | {label} | {gemm.m} x {gemm.n} x {gemm.k} | {rtl.cycles:,} | "
                f"{model.cycles:,} | {error:.2%} | {bound:,} | {rtl.cycles / bound:.3f} | "
                f"{scalesim:,} | {rtl.cycles / scalesim:.3f} | {rtl.sim_s:.2f} | "
                f"{model_s * 1e3:.2f} | {'yes' if exact else 'NO'} |")
    lines += [
        "",
        f"- Worst cycle error **{max(errors):.2%}**, mean {np.mean(errors):.2%} over "
        f"{len(errors)} layers (goal <= 1%).",
        f"- Time per layer: RTL {np.mean(rtl_times):.2f} s (simulation only, build cached), "
        f"model {np.mean(model_times) * 1e3:.2f} ms (the fastest of {MODEL_REPEATS} calls): "
        f"{np.mean(rtl_times) / np.mean(model_times):,.0f}x faster.",
        f"- RTL / fold bound: mean {np.mean(ratios):.3f}, median {np.median(ratios):.3f} (goal: "
        f"within 5% on average; ws on a 1-row layer cannot fill the array).",
        f"- RTL / SCALE-Sim: worst {max(vs_scalesim):.3f} (goal <= 1: never more cycles), "
        f"although RTL cycles include all data movement and SCALE-Sim's do not.",
    ]
    return "\n".join(lines) + "\n"
