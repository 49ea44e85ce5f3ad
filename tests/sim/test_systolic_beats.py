"""Bus beats of the DMA (program.rows_per_beat, cycles_per_beat, beats). The generator and the
model both take them from program.py, so RTL == model cannot catch a wrong formula here: a
beat must never carry more bytes than the bus moves in its cycles."""

from __future__ import annotations

import pytest

from hwloop.sim.systolic.program import Transfer, beats, cycles_per_beat, rows_per_beat


@pytest.mark.parametrize(("row_bytes", "bus_bytes", "rows", "cycles"), [
    (2, 16, 8, 1),   # eight whole rows fill the beat
    (3, 16, 5, 1),   # five rows (15 bytes), not six (18 > 16)
    (6, 16, 2, 1),   # two rows (12 bytes), not three
    (16, 16, 1, 1),
    (3, 2, 1, 2),    # a row wider than the bus: one row, ceil(3/2) cycles
    (17, 16, 1, 2),
    (33, 16, 1, 3),
    (32, 16, 1, 2),
    (1, 1, 1, 1),
])
def test_a_beat_moves_whole_rows_no_wider_than_the_bus(row_bytes, bus_bytes, rows, cycles):
    assert rows_per_beat(row_bytes, bus_bytes) == rows
    assert cycles_per_beat(row_bytes, bus_bytes) == cycles


@pytest.mark.parametrize("bus_bytes", [1, 2, 4, 8, 16, 32, 64, 128])
def test_beats_fit_the_bus_on_every_row_width(bus_bytes):
    for row_bytes in range(1, 3 * bus_bytes + 2):
        rows, cycles = rows_per_beat(row_bytes, bus_bytes), cycles_per_beat(row_bytes, bus_bytes)
        assert rows * row_bytes <= cycles * bus_bytes, (row_bytes, bus_bytes)
        # and no slack: one more row, or one fewer cycle, would not fit
        if row_bytes <= bus_bytes:
            assert cycles == 1 and (rows + 1) * row_bytes > bus_bytes, (row_bytes, bus_bytes)
        else:
            assert rows == 1 and (cycles - 1) * bus_bytes < row_bytes, (row_bytes, bus_bytes)


def test_bursts_never_share_a_beat():
    # 11 rows of 3 bytes on a 16-byte bus: 5 + 5 + 1 per burst
    assert beats(Transfer(bursts=2, length=11), 3, 16) == 2 * 3
    assert beats(Transfer(bursts=4, length=5), 3, 16) == 4
    assert beats(Transfer(bursts=1, length=7), 32, 16) == 7
