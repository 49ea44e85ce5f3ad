"""``make bench``: run the benchmarks and write docs/benchmarks.md.

Each benchmark is a module ``benchmarks/bench_<name>.py`` with a function
``run() -> str`` that measures and returns a Markdown section (starting with a ``## `` heading
and naming the command that made it). Its section is kept in ``docs/bench/<name>.md`` so that a
benchmark can be re-run alone (``python -m benchmarks.run NAME``) without losing the others;
``docs/benchmarks.md`` is assembled from all sections.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ROOT / "docs" / "bench"
OUTPUT = ROOT / "docs" / "benchmarks.md"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))


def assemble() -> None:
    parts = [
        "# Benchmarks\n",
        "Made by `make bench` (all) or `.venv/bin/python -m benchmarks.run NAME` (one section), "
        "on a machine with 2 cores and 24 GiB, no GPU. Each section names the command that made "
        "it and when.\n",
    ]
    for name in available():
        section = SECTIONS / f"{name}.md"
        if section.exists():
            parts.append(section.read_text().rstrip() + "\n")
    OUTPUT.write_text("\n".join(parts))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"benchmarks: error: unknown benchmark {unknown[0]!r} "
              f"(have: {', '.join(available())})", file=sys.stderr)
        return 2
    SECTIONS.mkdir(parents=True, exist_ok=True)
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        start = time.time()
        print(f"== {name}", flush=True)
        body = module.run()
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        footer = (f"\n_Made by `.venv/bin/python -m benchmarks.run {name}` on {stamp} "
                  f"({platform.machine()}, {time.time() - start:.0f} s)._\n")
        (SECTIONS / f"{name}.md").write_text(body.rstrip() + "\n" + footer)
    assemble()
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
