"""``program._writes_rows``: the constant-time overlap check the preload marks rely on, against
the rows a transfer writes, enumerated. A wrong answer only costs speed (a preload dropped, or
weights read before they are written, caught by the RTL tests), so model == RTL tests miss a
check that is too cautious: this one does not."""

from __future__ import annotations

import itertools

from hwloop.sim.systolic.program import Transfer, _writes_rows


def _rows(t: Transfer) -> set[int]:
    return {t.spad_base + b * t.spad_stride + i
            for b in range(t.bursts) for i in range(t.length)}


def test_writes_rows_equals_the_enumerated_rows():
    checked = 0
    for base, stride, bursts, length in itertools.product(range(4), range(6), range(4),
                                                          range(4)):
        t = Transfer(spad_base=base, spad_stride=stride, bursts=bursts, length=length)
        rows = _rows(t)
        for lo in range(22):
            for hi in range(lo - 1, 24):
                expected = any(lo <= r < hi for r in rows)
                assert _writes_rows(t, lo, hi) == expected, (t, lo, hi)
                checked += 1
    assert _writes_rows(None, 0, 10) is False
    assert checked > 100_000
