"""Checks of parameter values that every generator shares, with one wording for their errors."""

from __future__ import annotations

import dataclasses
import numbers
import operator
from collections.abc import Mapping
from typing import Any

from hwloop.errors import ParameterError


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool`` (``True`` is not a size). A value used as it is given
    must be one: a numpy integer fails ``json.dumps`` (see :func:`plain_ints`)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """An integer of any type that is not a ``bool``: an ``int`` or a numpy integer such as
    ``np.int64`` (a sweep over ``np.arange`` gives those). ``np.bool_`` is no
    ``numbers.Integral``; floats, even ``4.0``, are not integers."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def plain_int(value: Any) -> Any:
    """``value`` as a plain ``int`` if it is an integer (:func:`is_integer`), else unchanged
    (for the checks to refuse)."""
    return operator.index(value) if is_integer(value) and type(value) is not int else value


def plain_ints(obj: Any, *names: str) -> None:
    """Store the integer fields ``names`` of the (frozen) dataclass ``obj`` as plain ``int``,
    before its checks: a numpy integer would fail ``json.dumps`` (hashes, manifests, JSON) and
    name its type in error messages. Other values are left for the checks to refuse."""
    for name in names:
        object.__setattr__(obj, name, plain_int(getattr(obj, name)))


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
