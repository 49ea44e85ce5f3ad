"""Hex encode/decode of external-memory rows against a plain Python-integer reference."""

from __future__ import annotations

import numpy as np
import pytest

from hwloop.sim.systolic.harness import pack_rows, unpack_rows


def _reference_lines(values: np.ndarray, bits: int) -> list[str]:
    rows, n = values.shape
    width = 2 * (-(-(n * bits) // 8))
    lines = []
    for row in values.tolist():
        word = 0
        for i, v in enumerate(row):
            word |= (v & ((1 << bits) - 1)) << (i * bits)
        lines.append(f"{word:0{width}x}")
    return lines


@pytest.mark.parametrize("bits", [2, 4, 7, 8, 10, 16, 24, 32, 40, 64])
@pytest.mark.parametrize("n", [1, 3, 8])
def test_pack_unpack_round_trip(tmp_path, bits, n):
    seed = 1000 * bits + n
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    # a transposed (non-contiguous) array, as the operand layouts produce
    values = rng.integers(lo, hi, size=(n, 11), dtype=np.int64, endpoint=True).T
    values[0, 0], values[-1, -1] = lo, hi
    text = pack_rows(values, bits)
    assert text.splitlines() == _reference_lines(values, bits)
    path = tmp_path / "c.hex"
    path.write_text(text)
    assert np.array_equal(unpack_rows(path, 11, n, bits), values)
    assert np.array_equal(unpack_rows(path, 5, n, bits), values[:5])
    # what other $writememh writers emit: comments, an address, upper case, x bits as 0
    path.write_text("// memory dump\n@0\n" + text.upper())
    assert np.array_equal(unpack_rows(path, 11, n, bits), values)


def test_unpack_too_few_rows(tmp_path):
    path = tmp_path / "c.hex"
    path.write_text(pack_rows(np.zeros((2, 2), np.int64), 8))
    with pytest.raises(ValueError, match="has 2 rows, expected 3"):
        unpack_rows(path, 3, 2, 8)
