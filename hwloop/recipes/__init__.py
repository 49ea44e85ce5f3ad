"""Bundled workload recipes: small C programs whose L1-filtered traces are realistic L2 streams.

Each recipe is a C source in this package, built with the system C compiler (``-O2``) into the
build cache and captured with valgrind lackey from ``main`` on, through an L1 LRU filter
(default 32 KiB, 8 ways, 64-byte lines), so the trace holds the accesses an L2 would see.
``make traces`` runs them all (``hwloop trace recipes --all -o traces``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hwloop.buildcache import BuildCache, build_key
from hwloop.capture import CaptureStats, capture
from hwloop.errors import BuildError, InputError, ToolchainError
from hwloop.traces import L1Filter

DEFAULT_L1 = "32K:8:64"
CFLAGS = ("-O2", "-g0", "-std=c11")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A bundled workload: C source, its arguments and a cap on the trace length."""

    name: str
    source: str
    args: tuple[str, ...]
    description: str
    max_accesses: int = 1_000_000

    def source_text(self) -> str:
        return resources.files(__package__).joinpath(self.source).read_text()


RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe(name="compress", source="compress.c", args=("200000",),
           description="gzip-like LZ77 compressor (hash chains, 32 KiB window), 200 KB of text"),
    Recipe(name="sort", source="sort.c", args=("30000",),
           description="C library qsort as an index sort: 30,000 pointers to random ints"),
    Recipe(name="matmul", source="matmul.c", args=("128",),
           description="naive i-j-k matrix multiply of 128x128 doubles"),
    Recipe(name="hashtable", source="hashtable.c", args=("40000", "150000"),
           description="chained hash table: 40,000 inserts, 150,000 skewed lookups"),
)}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise InputError(f"unknown recipe {name!r} (have {', '.join(RECIPES)})") from None


def _compiler() -> tuple[str, str]:
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise ToolchainError("no C compiler found for the trace recipes (apt-get install gcc)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    return cc, (version.stdout.splitlines() or ["unknown"])[0]


def build(recipe: Recipe, *, cache: BuildCache | None = None) -> Path:
    """The recipe's executable, compiled at first use and kept in the build cache."""
    cache = cache or BuildCache()
    cc, version = _compiler()
    source = recipe.source_text()
    key = build_key(sources={recipe.source: source}, flags=CFLAGS, tools={"cc": version},
                    extra={"kind": "trace-recipe", "name": recipe.name})

    def compile_into(folder: Path) -> None:
        (folder / recipe.source).write_text(source)
        log = folder / "build.log"
        with open(log, "w") as handle:
            result = subprocess.run([cc, *CFLAGS, "-o", str(folder / recipe.name),
                                     str(folder / recipe.source)],
                                    stdout=handle, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            kept = cache.root / f"recipe-{recipe.name}-build.log"
            shutil.copy(log, kept)
            raise BuildError(f"compiling recipe {recipe.name} failed", log_path=kept)

    folder, _ = cache.get_or_build(key, compile_into)
    return folder / recipe.name


def run_recipe(recipe: Recipe, out_dir: str | Path, *, l1: str | None = DEFAULT_L1,
               max_accesses: int | None = None) -> CaptureStats:
    """Build and capture ``recipe`` into ``out_dir/<name>.trace``."""
    program = build(recipe)
    out = Path(out_dir) / f"{recipe.name}.trace"
    return capture(str(program), list(recipe.args), out, skip="main",
                   max_accesses=max_accesses or recipe.max_accesses,
                   l1=L1Filter.from_spec(l1) if l1 else None)
