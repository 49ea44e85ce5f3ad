"""Energy proxy: action counts x energy per action (an Accelergy-style ERT).

The table lives in ``constraints/energy.toml`` (45 nm figures of Horowitz, ISSCC 2014, with the
scaling rules written next to them). Action keys (from the RTL counters or the model):

============================  =====================================================
``mac``                       one in_bits x in_bits multiply + acc_bits add
``ifmap_sram_read/write``     one in_bits word of the ifmap scratchpad
``weight_sram_read/write``    one in_bits word of the weight scratchpad
``acc_sram_read/write``       one acc_bits word of the accumulator scratchpad
``dram_read_bytes/write_``    bytes over the external memory bus
``pe_reg_write``              one in_bits operand register write inside a PE
============================  =====================================================

Unknown action keys are ignored (and listed by :func:`unpriced_actions`).
"""

from __future__ import annotations

import functools
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwloop.errors import ConfigError
from hwloop.hdl.systolic.params import SystolicParams
from hwloop.paths import read_user_text

CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints"
DEFAULT_TABLE = CONSTRAINTS / "energy.toml"

COMPONENTS = ("mac", "pe_reg", "ifmap_sram", "weight_sram", "acc_sram", "dram")

_FIELDS = {
    "mac": ("multiply_pj", "multiply_ref_bits", "multiply_exponent", "add_pj", "add_ref_bits",
            "add_exponent"),
    "sram": ("read_pj", "ref_bits", "ref_kib", "size_exponent", "write_factor"),
    "dram": ("pj_per_byte",),
    "register": ("pj_per_bit",),
}


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file, or a ConfigError naming ``file:line``."""
    text = read_user_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError.at(path, line, message) from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError.at(path, None, "arrays or inline tables nested too deeply") from None


@dataclass(frozen=True)
class EnergyTable:
    values: dict[str, dict[str, float]]
    source: str

    def mac_pj(self, params: SystolicParams) -> float:
        m = self.values["mac"]
        mult = m["multiply_pj"] * (params.in_bits / m["multiply_ref_bits"]) ** m[
            "multiply_exponent"]
        add = m["add_pj"] * (params.acc_bits / m["add_ref_bits"]) ** m["add_exponent"]
        return mult + add

    def sram_read_pj(self, *, word_bits: int, kib: int) -> float:
        s = self.values["sram"]
        return s["read_pj"] * (word_bits / s["ref_bits"]) * (kib / s["ref_kib"]) ** s[
            "size_exponent"]

    def per_action(self, params: SystolicParams) -> dict[str, tuple[str, float]]:
        """Action key → (component, pJ per action) for this design."""
        write = self.values["sram"]["write_factor"]
        prices: dict[str, tuple[str, float]] = {"mac": ("mac", self.mac_pj(params))}
        for name, bits, kib in (("ifmap", params.in_bits, params.ifmap_kib),
                                ("weight", params.in_bits, params.weight_kib),
                                ("acc", params.acc_bits, params.acc_kib)):
            read = self.sram_read_pj(word_bits=bits, kib=kib)
            prices[f"{name}_sram_read"] = (f"{name}_sram", read)
            prices[f"{name}_sram_write"] = (f"{name}_sram", read * write)
        dram = self.values["dram"]["pj_per_byte"]
        prices["dram_read_bytes"] = ("dram", dram)
        prices["dram_write_bytes"] = ("dram", dram)
        prices["pe_reg_write"] = ("pe_reg",
                                  self.values["register"]["pj_per_bit"] * params.in_bits)
        return prices


@functools.cache
def _load(path: str) -> EnergyTable:
    file = Path(path)
    data = read_toml(file)
    values: dict[str, dict[str, float]] = {}
    # an unknown table or key is a typo of a known one, whose value would be silently missed
    for section in data:
        if section not in _FIELDS:
            raise ConfigError.at(file, None, f"unknown table [{section}] (known: "
                                 f"{', '.join(_FIELDS)})")
    for section, fields in _FIELDS.items():
        table = data.get(section)
        if not isinstance(table, dict):
            raise ConfigError.at(file, None, f"missing table [{section}]")
        for name in table:
            if name not in fields:
                raise ConfigError.at(file, None, f"[{section}] unknown key {name!r} (known: "
                                     f"{', '.join(fields)})")
        values[section] = {}
        for name in fields:
            if name not in table:
                raise ConfigError.at(file, None, f"{section}.{name} is missing")
            value = table[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0):
                raise ConfigError.at(file, None,
                                     f"{section}.{name} must be a non-negative number, "
                                     f"not {value!r}")
            values[section][name] = float(value)
        for name in ("multiply_ref_bits", "add_ref_bits", "ref_bits", "ref_kib"):
            if values[section].get(name) == 0:
                raise ConfigError.at(file, None, f"{section}.{name} must be positive, not 0")
    return EnergyTable(values, str(file))


def load_energy_table(path: str | Path | None = None) -> EnergyTable:
    """The energy table at ``path`` (default ``constraints/energy.toml``), validated."""
    return _load(str(Path(path) if path is not None else DEFAULT_TABLE))


def energy(params: SystolicParams, actions: Mapping[str, int | float],
           table: EnergyTable | None = None) -> tuple[float, dict[str, float]]:
    """Total energy (pJ) of ``actions`` on ``params`` and its split by component."""
    table = table or load_energy_table()
    breakdown = dict.fromkeys(COMPONENTS, 0.0)
    try:
        prices = table.per_action(params)
        for key, count in actions.items():
            if key in prices:
                component, pj = prices[key]
                breakdown[component] += float(count) * pj
        total = sum(breakdown.values())
    except OverflowError:  # a float power past 1.8e308 (a sum or product gives inf)
        total = math.inf
    if not math.isfinite(total):  # the table's values are each finite: their results are not
        raise ConfigError(f"{table.source}: the energy of {params.name} on these actions is "
                          "too large to compute: check the table's values")
    return total, breakdown


def unpriced_actions(params: SystolicParams, actions: Mapping[str, Any]) -> list[str]:
    prices = load_energy_table().per_action(params)
    return sorted(k for k in actions if k not in prices)
