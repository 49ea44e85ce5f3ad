"""The golden model's arithmetic at its edges: exact sums where float64 would round, and the
requantizer's argument checks. The seed is printed and can be set with HWLOOP_SEED."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hwloop.sim.systolic.golden import gemm_golden, requantize, wrap

SEED = int(os.environ.get("HWLOOP_SEED", "1234"))


def test_sums_past_2_53_are_exact_though_each_product_is_small():
    # each product 2**50 + 2**26 + 1 < 2**52, but nine of them pass 2**53 with an odd total,
    # which float64 cannot hold: the sum must be formed in integers
    v = (1 << 25) + 1
    a = np.full((1, 9), v, dtype=np.int64)
    exact = 9 * v * v
    assert exact > 1 << 53 and exact % 2 == 1
    assert gemm_golden(a, a.T, acc_bits=64)[0, 0] == exact
    assert gemm_golden(a, a.T, acc_bits=54)[0, 0] == int(wrap(np.array(exact), 54))


def test_large_k_sums_equal_integer_matmul():
    print(f"HWLOOP_SEED={SEED}")
    rng = np.random.default_rng(SEED)
    for k in (1, 9, 64, 300):
        # one sign per column of B, so the sums grow with k instead of cancelling
        a = rng.integers(1 << 24, 1 << 26, size=(3, k), dtype=np.int64)
        b = rng.integers(1 << 24, 1 << 26, size=(k, 4), dtype=np.int64) * np.array([1, -1, 1, -1])
        for acc_bits in (64, 57, 40):
            assert np.array_equal(gemm_golden(a, b, acc_bits=acc_bits), wrap(a @ b, acc_bits)), \
                (SEED, k, acc_bits)


@pytest.mark.parametrize(("shift", "out_bits", "message"), [
    (-1, 8, "shift must be in 0..63, not -1"),
    (64, 8, "shift must be in 0..63, not 64"),
    (2, 0, "out_bits must be in 1..64, not 0"),
    (2, 65, "out_bits must be in 1..64, not 65"),
])
def test_requantize_rejects_shifts_and_widths_out_of_range(shift, out_bits, message):
    with pytest.raises(ValueError) as info:
        requantize(np.array([5, -5]), shift=shift, out_bits=out_bits)
    assert str(info.value) == message


def test_requantize_at_the_widest_shift_and_narrowest_output():
    x = np.array([(1 << 63) - 1, -(1 << 63), 1 << 62, -(1 << 62) - 1], dtype=np.int64)
    assert requantize(x, shift=63, out_bits=64).tolist() == [1, -1, 1, -1]
    assert requantize(np.array([3, -3, 0, -1]), shift=0, out_bits=1).tolist() == [0, -1, 0, -1]
