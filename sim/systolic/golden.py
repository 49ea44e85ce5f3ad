"""The golden model of a GEMM on the systolic array: exact integer arithmetic, wrapping sums."""

from __future__ import annotations

import numpy as np

from hwloop.errors import ParameterError
from hwloop.sim.systolic.mapping import Gemm
from hwloop.validate import check_int, plain_int


def wrap(values: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of int64 ``values`` to ``bits`` bits (1..64), as int64."""
    values = np.asarray(values, dtype=np.int64)
    if bits >= 64:
        return values
    mask = np.int64((1 << bits) - 1)
    sign = np.int64(1 << (bits - 1))
    return ((values & mask) ^ sign) - sign


def gemm_golden(a: np.ndarray, b: np.ndarray, *, acc_bits: int) -> np.ndarray:
    """``C = A @ B`` with int64 results wrapped to ``acc_bits`` bits (two's complement).

    Wrapping each partial sum or only the total gives the same bits, so the sum is exact
    first and wrapped once.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"cannot multiply shapes {a.shape} and {b.shape}")
    k = a.shape[1]
    amax = int(np.abs(a).max(initial=0))
    bmax = int(np.abs(b).max(initial=0))
    if amax * bmax * max(k, 1) < 2**52:
        # float64 BLAS is exact below 2**53 and far faster than numpy's integer matmul
        c = np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    else:
        c = a @ b  # int64 wraps modulo 2**64, which is still exact modulo 2**acc_bits
    return wrap(c, acc_bits)


def random_operands(
    gemm: Gemm, *, in_bits: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Signed ``in_bits`` operands ``A[m,k]``, ``B[k,n]`` drawn uniformly over the full range."""
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1))
    a = rng.integers(lo, hi, size=(gemm.m, gemm.k), dtype=np.int64)
    b = rng.integers(lo, hi, size=(gemm.k, gemm.n), dtype=np.int64)
    return a, b


def requantize(sums: np.ndarray, *, shift: int, out_bits: int) -> np.ndarray:
    """Stored outputs: ``(x + 2**(shift-1)) >> shift`` (arithmetic shift, rounding half up;
    no rounding term for ``shift`` 0), saturated to the signed ``out_bits`` range, as int64.

    ``sums`` are the wrapped accumulator values. The sum is never formed (it may need 65
    bits): adding half of ``2**shift`` before the floor division carries exactly bit
    ``shift - 1`` of ``x`` into ``x >> shift``.
    """
    x = np.asarray(sums, dtype=np.int64)
    if not 0 <= shift <= 63:
        raise ValueError(f"shift must be in 0..63, not {shift}")
    if not 1 <= out_bits <= 64:
        raise ValueError(f"out_bits must be in 1..64, not {out_bits}")
    if shift == 0:
        y = x
    else:
        y = (x >> np.int64(shift)) + ((x >> np.int64(shift - 1)) & np.int64(1))
    if out_bits >= 64:
        return y
    return np.clip(y, -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1)


def default_out_shift(params, gemm: Gemm) -> int:
    """The shift used when the caller gives none: the largest sum magnitude random full-range
    operands reach at three standard deviations, ``sqrt(k) * 2**(2*in_bits - 2)``, still fits
    ``out_bits`` after the shift: ``2*in_bits - 1 + ceil(log2(k) / 2) - out_bits`` (at least
    0, at most ``acc_bits - 1``). 0 without requantization."""
    if params.out_bits is None:
        return 0
    half_log_k = -(-(gemm.k - 1).bit_length() // 2)  # ceil(log2(k) / 2), exact in integers
    shift = 2 * params.in_bits - 1 + half_log_k - params.out_bits
    return min(max(shift, 0), params.acc_bits - 1)


def resolve_out_shift(params, gemm: Gemm, out_shift: int | None) -> int:
    """The store shift of ``gemm``: ``out_shift`` (checked) or, for None, the default chooser's.

    A shift needs a design with ``out_bits``: one that writes raw sums has nothing to shift.
    """
    if out_shift is None:
        return default_out_shift(params, gemm)
    if params.out_bits is None:
        raise ParameterError(f"out_shift needs a design with out_bits ({params.name} writes "
                             "back the raw sums)")
    out_shift = plain_int(out_shift)  # a numpy integer is stored and keyed as an int
    check_int("out_shift", out_shift, 0, params.acc_bits - 1)
    return out_shift


def stored_golden(a: np.ndarray, b: np.ndarray, params, *, shift: int) -> np.ndarray:
    """What the accelerator ``params`` writes back for ``A @ B``: the wrapped sums, requantized
    with ``shift`` when the design has ``out_bits``."""
    c = gemm_golden(a, b, acc_bits=params.acc_bits)
    if params.out_bits is None:
        return c
    return requantize(c, shift=shift, out_bits=params.out_bits)
