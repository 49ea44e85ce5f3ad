"""Checks of parameter values that every generator shares, with one wording for their errors."""

from __future__ import annotations

import dataclasses
import numbers
import operator
from collections.abc import Mapping
from typing import Any

from hwloop.errors import ParameterError


def is_int(value: Any) -> bool:
    """An integer that is not a ``bool`` (``True`` is not a size): an ``int`` or an integer
    scalar such as ``np.int64`` (a sweep over ``np.arange`` gives those). ``np.bool_`` is no
    ``numbers.Integral``; floats, even ``4.0``, are not integers."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def plain_ints(obj: Any, *names: str) -> None:
    """Store the integer fields ``names`` of the (frozen) dataclass ``obj`` as plain ``int``:
    a numpy integer passes the checks but not ``json.dumps`` (hashes, manifests, JSON), and
    its repr would name the type in error messages. Other values are left for the checks."""
    for name in names:
        value = getattr(obj, name)
        if is_int(value) and type(value) is not int:
            object.__setattr__(obj, name, operator.index(value))


def check_int(name: str, value: Any, lo: int, hi: int) -> None:
    """``name`` must be an integer in ``lo..hi``."""
    if not is_int(value) or not lo <= value <= hi:
        raise ParameterError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


def check_pow2(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    """``name`` must be a power of two (in ``lo..hi`` when a range is given)."""
    in_range = lo is None or hi is None or (is_int(value) and lo <= value <= hi)
    if not is_int(value) or value < 1 or value & (value - 1) or not in_range:
        where = f" in {lo}..{hi}" if lo is not None and hi is not None else ""
        raise ParameterError(f"{name} must be a power of two{where}, not {value!r}")


def check_known(values: Mapping[str, Any], dataclass_type: type, what: str) -> None:
    """Every key of ``values`` must be a field of ``dataclass_type`` (``what`` names the kind)."""
    known = {f.name for f in dataclasses.fields(dataclass_type)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParameterError(f"unknown {what} parameter {unknown[0]!r}")
