"""CLI commands of the cache area: ``generate cache``, ``generate prefetcher``, ``sim cache``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwloop.cli import path_arg
from hwloop.errors import ParameterError
from hwloop.hdl.cache.params import PREFETCHER_LINE_BITS
from hwloop.manifest import MANIFEST

if TYPE_CHECKING:
    from hwloop.hdl.cache.params import CacheConfig
    from hwloop.hdl.cache.prefetcher import PrefetcherConfig


def _add_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sets", type=int, required=True, help="number of sets (power of two)")
    p.add_argument("--ways", type=int, required=True, help="associativity (1..64)")
    p.add_argument("--line-bytes", type=int, required=True, help="line size (power of two)")
    p.add_argument("--addr-bits", type=int, default=48, help="address width (default 48)")
    p.add_argument("--policy", default="lru",
                   help="lru, plru, srrip, random, table, opt (model only)")
    p.add_argument("--seed", type=int, default=None,
                   help="LFSR seed of policy random (1..65535, default 1)")
    p.add_argument("--table", type=path_arg, help="table file of policy table (.npz)")


def _add_prefetch_args(p: argparse.ArgumentParser, *, kind_flag: str) -> None:
    p.add_argument(kind_flag, dest="prefetcher", metavar="KIND",
                   help="prefetcher: nextline, stride, table")
    _add_prefetch_options(p, kind_flag=kind_flag)
    p.add_argument("--prefetch-table", type=path_arg, help="delta table file of prefetcher table")


def _add_prefetch_options(p: argparse.ArgumentParser, *, kind_flag: str) -> None:
    p.add_argument("--degree", type=int, default=None,
                   help="lines per prediction (1..4, default 1)")
    p.add_argument("--latency", type=int, default=None,
                   help="fill latency in demand accesses (1..255, default 4)")
    p.add_argument("--queue", type=int, default=None,
                   help="request queue entries (1..16, default 8)")
    p.add_argument("--entries", type=int, default=None,
                   help=f"stride table entries ({kind_flag} stride; power of two, default 256)")


_PREFETCH_OPTIONS = ("degree", "latency", "queue", "entries")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The options among ``names`` given on the command line. Their argparse default is None,
    so that one given where it has no effect is an error, not silently ignored; the others
    keep the config's defaults."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _cache_config(args: argparse.Namespace):
    from hwloop.hdl.cache.params import CacheConfig

    config = CacheConfig(sets=args.sets, ways=args.ways, line_bytes=args.line_bytes,
                         addr_bits=args.addr_bits, policy=args.policy, table=args.table,
                         **_given(args, ("seed",)))
    if args.seed is not None and config.policy != "random":
        raise ParameterError("--seed needs --policy random")
    return config


def _prefetch_config(args: argparse.Namespace):
    given = _given(args, _PREFETCH_OPTIONS)
    if args.prefetcher is None:
        if args.prefetch_table is not None:
            raise ParameterError("--prefetch-table needs --prefetcher table")
        if given:
            raise ParameterError(f"--{next(iter(given))} needs --prefetcher")
        return None
    return _prefetcher(args.prefetcher, args.prefetch_table, given, kind_flag="--prefetcher")


def _prefetcher(kind: str, table: Path | None, given: dict[str, Any], *, kind_flag: str):
    """The prefetcher of the options ``given``; ``--entries`` only where it has effect."""
    from hwloop.hdl.cache.prefetcher import PrefetcherConfig

    prefetch = PrefetcherConfig(kind=kind, table=table, **given)
    if "entries" in given and prefetch.kind != "stride":  # table's size is its file's
        raise ParameterError(f"--entries needs {kind_flag} stride")
    return prefetch


def _config_report(config: CacheConfig) -> dict[str, Any]:
    """The config as reported (JSON, manifest): a seed only where it has effect (random)."""
    values = config.to_dict()
    if config.policy != "random":
        values["seed"] = None
    return values


def _prefetch_report(prefetch: PrefetcherConfig | None) -> dict[str, Any] | None:
    """The prefetcher as reported: ``entries`` only where it has effect (stride), as
    :func:`_config_report` does for the seed."""
    if prefetch is None:
        return None
    values = prefetch.to_dict()
    if prefetch.kind != "stride":
        values["entries"] = None
    return values


def _generate_cache(args: argparse.Namespace) -> int:
    from hwloop.hdl.cache.generate import cache_design
    from hwloop.manifest import write_design
    from hwloop.toolchain import tool_versions

    config = _cache_config(args)
    if config.policy == "opt":
        raise ParameterError("policy 'opt' (Belady) exists only in the model, not in RTL")
    prefetch = _prefetch_config(args)
    design = cache_design(config, prefetch=prefetch)
    extra: dict[str, Any] = {
        "prefetcher": _prefetch_report(prefetch),
        "tables": design.tables,
        "derived": {"tag_bits": config.tag_bits, "index_bits": config.index_bits,
                    "offset_bits": config.offset_bits, "size_bytes": config.size_bytes},
        "tools": tool_versions(),
    }
    write_design(args.output, generator="cache", name=design.name,
                 params=_config_report(config), ports=design.ports, verilog=design.verilog,
                 description=f"hwloop {config.ways}-way {config.policy} cache", extra=extra)
    print(f"wrote {args.output}/{design.name}.v, {MANIFEST}, {design.name}.core")
    return 0


def _generate_prefetcher(args: argparse.Namespace) -> int:
    from hwloop.hdl.cache.generate import prefetcher_design
    from hwloop.manifest import write_design

    if not 1 <= args.line_bits <= 64:
        raise ParameterError(f"line-bits must be an integer in 1..64, not {args.line_bits}")
    if args.kind == "table" and args.table is None:  # PrefetcherConfig names sim cache's flag
        raise ParameterError("prefetcher 'table' needs a table file (--table FILE)")
    prefetch = _prefetcher(args.kind, args.table, _given(args, _PREFETCH_OPTIONS),
                           kind_flag="--kind")
    design = prefetcher_design(prefetch, line_bits=args.line_bits)
    write_design(args.output, generator="prefetcher", name=design.name,
                 params=_prefetch_report(prefetch), ports=design.ports, verilog=design.verilog,
                 description=f"hwloop {prefetch.kind} prefetcher",
                 extra={"line_bits": args.line_bits, "tables": design.tables})
    print(f"wrote {args.output}/{design.name}.v, {MANIFEST}, {design.name}.core")
    return 0


def _sim_cache(args: argparse.Namespace) -> int:
    from hwloop.sim.cache.model import simulate
    from hwloop.traces import read_trace

    config = _cache_config(args)
    prefetch = _prefetch_config(args)
    if args.fidelity == "rtl" and config.policy == "opt":
        raise ParameterError("policy 'opt' (Belady) exists only in the model: "
                             "use --fidelity model")
    if prefetch is not None and config.policy == "opt":
        raise ParameterError("policy 'opt' cannot be combined with a prefetcher")
    # validate the tables before the (possibly long) trace read and build
    from hwloop.hdl.cache.generate import design_name, load_tables

    load_tables(config, prefetch)
    trace = read_trace(args.trace)
    report: dict[str, Any] = {"trace": str(args.trace), "fidelity": args.fidelity,
                              "config": _config_report(config),
                              "prefetcher": _prefetch_report(prefetch)}
    if args.fidelity == "rtl":
        from hwloop.sim.cache.player import compare, run_player

        rtl = run_player(config, trace, prefetch=prefetch)
        result = rtl.result
        model = simulate(config, trace, prefetcher=prefetch)
        diff = compare(model, result)
        report["matches_model"] = diff is None
        if diff is not None:
            report["model_difference"] = diff
        report["sim_seconds"] = round(rtl.sim_seconds, 3)
    else:
        result = simulate(config, trace, prefetcher=prefetch)
    report.update(result.counters())
    report["hit_rate"] = result.hit_rate
    if prefetch is not None:
        baseline = simulate(config, trace)
        issued = result.prefetch_issued
        report["accuracy"] = result.prefetch_useful / issued if issued else 0.0
        report["coverage"] = ((baseline.misses - result.misses) / baseline.misses
                              if baseline.misses else 0.0)
        report["misses_without_prefetcher"] = baseline.misses
        report["baseline_fidelity"] = "model"
    else:
        for name in list(report):
            if name.startswith("prefetch_"):
                del report[name]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        # the name generate gives this design (a table's hash, the prefetcher's kind)
        print(f"{design_name(config, prefetch)} on {args.trace} ({args.fidelity}): "
              f"{result.accesses} accesses, "
              f"{result.hits} hits, {result.misses} misses, hit rate {result.hit_rate:.4f}, "
              f"{result.evictions} evictions, {result.writebacks} writebacks")
        if prefetch is not None:
            print(f"prefetcher {prefetch.kind}: issued {result.prefetch_issued}, useful "
                  f"{result.prefetch_useful}, late {result.prefetch_late}, accuracy "
                  f"{report['accuracy']:.3f}, coverage {report['coverage']:.3f}")
        if args.fidelity == "rtl":
            print("RTL matches the golden model bit-exactly" if report["matches_model"]
                  else f"RTL differs from the model: {report['model_difference']}")
    return 0 if report.get("matches_model", True) else 1


def register_generate(sub) -> None:
    p = sub.add_parser("cache", help="a set-associative cache (Verilog + manifest.json)")
    _add_cache_args(p)
    _add_prefetch_args(p, kind_flag="--prefetcher")
    p.add_argument("-o", "--output", type=path_arg, required=True, help="output folder")
    p.set_defaults(func=_generate_cache)

    p = sub.add_parser("prefetcher", help="a prefetcher alone (Verilog + manifest.json)")
    p.add_argument("--kind", required=True, help="nextline, stride, table")
    p.add_argument("--table", type=path_arg, help="delta table file of kind table (.npz)")
    p.add_argument("--line-bits", type=int, default=PREFETCHER_LINE_BITS,
                   help=f"line address width (default {PREFETCHER_LINE_BITS})")
    _add_prefetch_options(p, kind_flag="--kind")
    p.add_argument("-o", "--output", type=path_arg, required=True, help="output folder")
    p.set_defaults(func=_generate_prefetcher)


def register_sim(sub) -> None:
    p = sub.add_parser("cache", help="replay a trace through a cache (model or RTL)")
    p.add_argument("--trace", type=path_arg, required=True, help="a .trace file")
    _add_cache_args(p)
    _add_prefetch_args(p, kind_flag="--prefetcher")
    p.add_argument("--fidelity", choices=("model", "rtl"), default="model",
                   help="model (C golden model, default) or rtl (Verilator co-simulation)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_sim_cache)


__all__ = ["register_generate", "register_sim"]
