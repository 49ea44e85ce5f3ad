"""The model's compact programs (``build_program(compact=True)``): a long tile loop's middle
iterations as one repeated pair. They stand for exactly the full program the RTL runs (equal
but for external addresses), and the model's cycles and actions on them equal its walk of the
full list, on random designs, layers and mappings with long tile loops.

The seed is printed and can be set with HWLOOP_SEED.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import replace

import numpy as np

from hwloop.hdl.systolic.params import SystolicParams
from hwloop.sim.systolic.mapping import Gemm, Mapping, padded_dims
from hwloop.sim.systolic.model import model_gemm, program_actions, program_cycles
from hwloop.sim.systolic.program import Instruction, build_program, expand, multiplicities
from tests.sim.random_layers import random_mapping

model_module = importlib.import_module("hwloop.sim.systolic.model")

SEED = int(os.environ.get("HWLOOP_SEED", "1234"))


def _steps(params, gemm: Gemm, mapping: Mapping) -> int:
    pm, pn, pk = padded_dims(params, gemm)
    m_extent = pm if params.dataflow == "os" else gemm.m
    return -(-m_extent // mapping.tile_m) * -(-pn // mapping.tile_n) * -(-pk // mapping.tile_k)


def _random_long_loops(rng: np.random.Generator):
    """Endless random (design, layer, fitted mapping) draws that fit, with small tiles so that
    loops have 9 or more iterations (compact), at most 4000 tile steps."""
    while True:
        R, C = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        dataflow = str(rng.choice(["os", "ws"]))
        params = SystolicParams(
            rows=R, cols=C, dataflow=dataflow, ifmap_kib=int(rng.choice([1, 4, 8])),
            weight_kib=int(rng.choice([1, 4, 8])), acc_kib=int(rng.choice([1, 4, 8])),
            bus_bytes=int(rng.choice([1, 2, 4, 8, 16])), mem_latency=int(rng.integers(0, 25)),
            out_bits=None if rng.random() < 0.7 else 8, read_ahead=bool(rng.random() < 0.5))
        gemm = Gemm(m=int(rng.integers(1, 400)), n=int(rng.integers(1, 160)),
                    k=int(rng.integers(1, 400)))
        mapping = random_mapping(rng, params, gemm, free=30, n_blocks=3)
        if mapping is not None and _steps(params, gemm, mapping) <= 4000:
            yield params, gemm, mapping


def _without_addresses(instr: Instruction) -> Instruction:
    """The instruction with external addresses cleared: the only fields a compact program's
    copies differ in from the full program's instructions."""
    return replace(instr, **{name: replace(t, ext_base=0)
                             for name in ("load_a", "load_b", "store_c")
                             if (t := getattr(instr, name)) is not None})


def test_compact_programs_stand_for_the_full_program():
    """For every program choice (plain, split, forced ahead, the builder's own): the compact
    program expands to the full one (but external addresses), its walk and actions equal the
    full list's, and ``model_gemm`` equals the full list's walk."""
    print(f"HWLOOP_SEED={SEED}")
    rng = np.random.default_rng(SEED)
    checked = compacted = 0
    for params, gemm, mapping in _random_long_loops(rng):
        if checked >= 40:
            break
        where = (params, gemm, mapping)
        for options in ({"split_ends": False, "ahead": False}, {"split_ends": True},
                        {"ahead": True}, {}):
            full = build_program(params, gemm, mapping, **options)
            small = build_program(params, gemm, mapping, compact=True, **options)
            compacted += bool(small.repeats)
            expanded = expand(small.instructions, small.repeats)
            assert [_without_addresses(i) for i in expanded] == \
                [_without_addresses(i) for i in full.instructions], (where, options)
            assert sum(multiplicities(len(small.instructions), small.repeats)) == \
                len(full.instructions)
            cycles = program_cycles(params, full.instructions)
            assert program_cycles(params, small.instructions, repeats=small.repeats) == \
                cycles, (where, options)
            assert small.cycles == full.cycles, (where, options)
            if not options:
                run = model_gemm(params, gemm, mapping)
                assert (run.cycles, run.actions) == cycles, where
                assert program_actions(params, small.instructions, small.repeats) == cycles[1]
        checked += 1
    assert compacted >= 40  # most draws have long loops


def test_huge_layers_take_time_in_loop_edges(monkeypatch):
    """A 16384^3 GEMM (2^18 tile steps on 8x8 os, 2^17 on 16x16 ws) is modelled from a
    compact program of a few hundred instructions, and the walk steps through a few thousand
    at most (the full list took about a minute; its time is in benchmarks, not here)."""
    built, walked = [], []
    build, step = model_module.build_program, model_module._step

    def counted_build(*args, **kwargs):
        program = build(*args, **kwargs)
        built.append(len(program.instructions))
        return program

    def counted_step(*args):
        walked.append(1)
        return step(*args)

    monkeypatch.setattr(model_module, "build_program", counted_build)
    monkeypatch.setattr(model_module, "_step", counted_step)
    gemm = Gemm(m=16384, n=16384, k=16384)
    for params in (SystolicParams(rows=8, cols=8, dataflow="os"),
                   SystolicParams(rows=16, cols=16, dataflow="ws")):
        mapping = Mapping(tile_m=64, tile_n=64, tile_k=512).fit_to(params, gemm)
        plain = build_program(params, gemm, mapping, compact=True, split_ends=False,
                              ahead=False)
        assert len(plain.instructions) < 1000
        assert sum(multiplicities(len(plain.instructions), plain.repeats)) == \
            _steps(params, gemm, mapping) + 2
        built.clear()
        walked.clear()
        run = model_gemm(params, gemm, mapping)
        assert built and max(built) < 1000  # the program model_gemm walks is the compact one
        assert 0 < len(walked) < 5000  # instructions stepped through, of 2^17-2^18
        assert run.actions["mac"] == gemm.macs
