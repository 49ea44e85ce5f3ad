"""The cocotb test that runs a list of GEMM jobs on one simulator process.

For each job: wait until the previous one's last bus beat is over (``settle`` cycles), link
its memory files to the harness's fixed names, pulse ``load``, pulse ``start``, wait for
``done`` (Python sleeps until then), read the hardware counters, pulse ``dump`` to write C
back, record the result. The job list is the JSON file
named by ``HWLOOP_SYSTOLIC_JOBS``. The simulator's main drives the clock (sim/clocked_main.cpp),
so the design runs free between the events Python awaits.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge, Timer, with_timeout

PERIOD_NS = 10  # the clock of sim/clocked_main.cpp
WAKE_EARLY = 16  # cycles before the predicted end at which the timed sleep ends


def _link(src: str, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    os.symlink(src, dst)


@cocotb.test()
async def run_jobs(dut) -> None:
    spec = json.loads(Path(os.environ["HWLOOP_SYSTOLIC_JOBS"]).read_text())
    here = Path.cwd()
    # names come in the job file: importing hwloop's generators here would load Amaranth into
    # every simulator process
    files, counter_names = spec["files"], spec["counters"]
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)  # registered in the harness too
    results = []
    for index, job in enumerate(spec["jobs"]):
        if index:
            # every job starts on an idle accelerator, as the model times it: the previous
            # job's last C row may still hold the write bus (its pace) for a few cycles after
            # ``done`` (a 64-byte row on a 1-byte bus: 63 more; a 1x1x1 GEMM right after
            # took 59 cycles instead of 34)
            await Timer(spec["settle"] * PERIOD_NS, "ns")
        for key in ("instr", "a", "b"):
            _link(job[key], here / files[key])
        began = time.perf_counter()
        dut.load.value = 1
        await RisingEdge(dut.clk)
        dut.load.value = 0
        loaded = time.perf_counter()
        dut.n_instr.value = job["n_instr"]
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)  # the harness registers start before the accelerator
        if job.get("step"):
            # the slow way, for comparison: Python wakes up on every clock edge, peeks done
            # and pokes an input
            edge = RisingEdge(dut.clk)
            for cycle in range(job["max_cycles"]):
                if int(dut.done.value):
                    break
                dut.c_rows.value = cycle & 0xFF
                await edge
            else:
                results.append({"timeout": True, "sim_s": time.perf_counter() - began})
                break
        else:
            try:
                # Sleep on a timer to a few cycles before the model's predicted end, then wait
                # for `done`: a value-change callback is looked at in every time step (about 4%
                # of an 8x8 free run), a timer is one deadline. What is measured stays the
                # hardware's counters; the prediction only saves those checks (a late `done` is
                # still awaited; after an early one the counters have stopped).
                asleep = job["model_cycles"] - WAKE_EARLY
                if asleep > 0:
                    await Timer(asleep * PERIOD_NS, "ns")
                    await RisingEdge(dut.clk)  # where a `done` edge would have woken us
                if not int(dut.done.value):
                    await with_timeout(RisingEdge(dut.done), job["max_cycles"] * PERIOD_NS, "ns")
            except cocotb.triggers.SimTimeoutError:
                results.append({"timeout": True, "sim_s": time.perf_counter() - began})
                break
        finished = time.perf_counter()
        counters = {name: int(getattr(dut, f"cnt_{name}").value) for name in counter_names}
        dut.c_rows.value = job["c_rows"]
        dut.dump.value = 1
        await RisingEdge(dut.clk)
        dut.dump.value = 0
        await RisingEdge(dut.clk)
        await Timer(1, "ns")
        os.replace(here / files["c"], job["c"])
        dumped = time.perf_counter()
        results.append({"timeout": False, "counters": counters, "sim_s": dumped - began,
                        "phases": {"load_s": loaded - began, "run_s": finished - loaded,
                                   "dump_s": dumped - finished}})
    Path(spec["results"]).write_text(json.dumps(results))
