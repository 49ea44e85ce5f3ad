"""Run SCALE-Sim 3.0.0 in its own venv (it crashes with numpy >= 2.4) on a GEMM suite.

Used by ``bench_scalesim``. The venv is made once at ``$HWLOOP_CACHE/scalesim-venv`` with
``python -m venv`` + ``pip install scalesim==3.0.0 'numpy<2.4'``.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwloop.paths import cache_dir

SCALESIM_VERSION = "3.0.0"


def scalesim_python() -> Path:
    venv = cache_dir() / "scalesim-venv"
    python = venv / "bin" / "python"
    stamp = venv / f".scalesim-{SCALESIM_VERSION}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        f"scalesim=={SCALESIM_VERSION}", "numpy<2.4"], check=True)
        stamp.write_text("ok\n")
    return python


CONFIG = """[general]
run_name = hwloop

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = {kib}
FilterSramSzkB = {kib}
OfmapSramSzkB = {kib}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = 10
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False
"""

LAYOUT_HEADER = ("Layer name, IFMAP Height Intraline Factor, IFMAP Width Intraline Factor, "
                 "Filter Height Intraline Factor, Filter Width Intraline Factor, Channel Intraline "
                 "Factor, Num Filter Intraline Factor, IFMAP Height Intraline Order, IFMAP Width "
                 "Intraline Order, Channel Intraline Order, IFMAP Height Interline Order, IFMAP "
                 "Width Interline Order, Channel Interline Order, Num Filter Intraline Order, "
                 "Channel Intraline Order, Filter Height Intraline Order, Filter Width Intraline "
                 "Order, Num Filter Interline Order, Channel Interline Order, Filter Height "
                 "Interline Order, Filter Width Interline Order,")
# custom layouts are off: SCALE-Sim only needs one well-formed row per layer
LAYOUT_ROW = "1, 1, 1, 1, 1, 1, 0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3,"


def run_scalesim(layers: list[tuple[str, int, int, int]], *, rows: int, cols: int,
                 dataflow: str, kib: int = 1024
                 ) -> tuple[dict[str, tuple[int, int]], float]:
    """SCALE-Sim cycles per GEMM layer ``(name, m, n, k)`` and its wall time in seconds.

    Per layer: (compute cycles — its "Total Cycles", what its formula gives —, cycles including
    the initial prefetch — its "Total Cycles (incl. prefetch)").
    """
    python = scalesim_python()
    with tempfile.TemporaryDirectory(prefix="hwloop-scalesim-") as tmp:
        folder = Path(tmp)
        (folder / "scale.cfg").write_text(CONFIG.format(rows=rows, cols=cols, kib=kib,
                                                        dataflow=dataflow))
        topology = ["Layer Name, M, N, K,"] + [f"{n}, {m}, {nn}, {k}," for n, m, nn, k in layers]
        (folder / "topo.csv").write_text("\n".join(topology) + "\n")
        layout = [LAYOUT_HEADER] + [f"{n}, {LAYOUT_ROW}" for n, *_ in layers]
        (folder / "layout.csv").write_text("\n".join(layout) + "\n")
        start = time.perf_counter()
        proc = subprocess.run(
            [str(python), "-m", "scalesim.scale", "-c", "scale.cfg", "-t", "topo.csv",
             "-l", "layout.csv", "-p", "results", "-i", "gemm", "-s", "N"],
            cwd=folder, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"SCALE-Sim failed: {(proc.stderr or proc.stdout)[-2000:]}")
        reports = list((folder / "results").rglob("COMPUTE_REPORT.csv"))
        if not reports:
            raise RuntimeError(f"SCALE-Sim wrote no COMPUTE_REPORT.csv: {proc.stdout[-2000:]}")
        with open(reports[0]) as handle:
            rows_ = [r for r in csv.reader(handle) if r and r[0].strip().isdigit()]
    cycles = {layers[int(r[0])][0]: (int(float(r[2])), int(float(r[1]))) for r in rows_}
    return cycles, wall
