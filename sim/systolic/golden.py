"""The golden model of a GEMM on the systolic array: exact integer arithmetic, wrapping sums."""

from __future__ import annotations

import numpy as np

from hwloop.sim.systolic.mapping import Gemm


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
