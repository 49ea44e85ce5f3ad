"""The .trace format, the lackey and csv text formats, trace info and the L1 filter."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from hwloop.cli import main
from hwloop.errors import ParameterError, TraceError
from hwloop.traces import (
    TRACE_DTYPE,
    L1Filter,
    LackeyParser,
    TraceWriter,
    empty_trace,
    iter_csv,
    iter_lackey,
    iter_trace_chunks,
    parse_cache_spec,
    read_header,
    read_trace,
    trace_info,
    write_csv,
    write_trace,
)

SEED = 20261121


def random_trace(n: int, seed: int = SEED) -> np.ndarray:
    print(f"random_trace seed={seed} n={n}")
    rng = np.random.default_rng(seed)
    records = empty_trace(n)
    records["pc"] = 0x400000 + rng.integers(0, 300, n) * 4
    walk = np.cumsum(rng.integers(-4096, 4096, n))
    records["addr"] = (0x7FF000000000 + walk).astype(np.uint64)
    records["addr"][::7] = rng.integers(0, 2**64 - 1, len(records[::7]), dtype=np.uint64)
    records["write"] = rng.random(n) < 0.3
    return records


# -- format ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 65535, 65536, 65537, 200_003])
def test_round_trip(tmp_path: Path, n: int) -> None:
    records = random_trace(n)
    path = tmp_path / "t.trace"
    assert write_trace(path, records) == n
    back = read_trace(path)
    assert back.dtype == TRACE_DTYPE
    assert np.array_equal(back, records)
    assert read_header(path) == n


def test_chunked_reading_and_writing_agree(tmp_path: Path) -> None:
    records = random_trace(150_000)
    path = tmp_path / "t.trace"
    with TraceWriter(path, chunk_records=1000) as writer:
        for start in range(0, len(records), 777):
            writer.append(records[start: start + 777])
    chunks = list(iter_trace_chunks(path, 4096))
    assert all(len(c) == 4096 for c in chunks[:-1])
    assert np.array_equal(np.concatenate(chunks), records)


def test_writer_accepts_any_array_with_the_fields(tmp_path: Path) -> None:
    other = np.zeros(3, dtype=[("write", "?"), ("addr", "<i8"), ("pc", "<u4")])
    other["addr"] = [1, 2, 3]
    other["write"] = [True, False, True]
    write_trace(tmp_path / "t.trace", other)
    back = read_trace(tmp_path / "t.trace")
    assert back["addr"].tolist() == [1, 2, 3] and back["write"].tolist() == [1, 0, 1]


def test_writing_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    write_trace(path, random_trace(10))
    before = path.read_bytes()
    with pytest.raises(RuntimeError), TraceWriter(path) as writer:
        writer.append(random_trace(100_000))
        raise RuntimeError("interrupted")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.trace"]


def test_written_files_have_the_usual_mode(tmp_path: Path) -> None:
    """Renamed into place from an owner-only temporary file, yet as readable as any file the
    user makes (0o666 less the umask, not 0o600)."""
    write_trace(tmp_path / "t.trace", random_trace(10))
    write_csv(tmp_path / "t.csv", iter_trace_chunks(tmp_path / "t.trace", 4))
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("t.trace", "t.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask


def test_compact(tmp_path: Path) -> None:
    records = empty_trace(100_000)
    records["pc"] = 0x401000 + (np.arange(100_000) % 5) * 4
    records["addr"] = 0x10000000 + np.arange(100_000) * 8
    write_trace(tmp_path / "t.trace", records)
    assert os.path.getsize(tmp_path / "t.trace") < 100_000  # < 1 byte per access


def _damaged(tmp_path: Path, edit, records: np.ndarray | None = None  # type: ignore[no-untyped-def]
             ) -> Path:
    """A trace of ``records`` (100,000 random ones by default) as ``edit`` changes its bytes."""
    path = tmp_path / "t.trace"
    write_trace(path, random_trace(100_000) if records is None else records)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(edit(data)))
    return path


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    path = _damaged(tmp_path, lambda d: d[:-100])
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value) == (f"{path}: truncated: header promises 100000 accesses, "
                               f"file ends after 65536")


def test_missing_footer_is_detected(tmp_path: Path) -> None:
    path = _damaged(tmp_path, lambda d: d[:-10])
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value) == f"{path}: truncated: footer is 6 of 16 bytes"


def test_flipped_byte_is_detected(tmp_path: Path) -> None:
    def flip(data: bytearray) -> bytearray:
        data[200] ^= 0x40
        return data

    path = _damaged(tmp_path, flip)
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value) == f"{path}: corrupt: chunk 0 at byte 24 fails its checksum"


@pytest.mark.parametrize("modes", [0xFF, 0x80, 0x04])
def test_unknown_column_modes_are_detected(tmp_path: Path, modes: int) -> None:
    """A modes byte with bits other than the two column modes is named before the chunk is
    inflated (version 2's CRC did not cover it, and it decoded the payload anyway)."""
    def set_modes(data: bytearray) -> bytearray:
        data[24 + 12] = modes
        return data

    path = _damaged(tmp_path, set_modes)
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value) == (f"{path}: corrupt: chunk 0 at byte 24 has unknown column "
                               f"modes 0x{modes:02x}")


def test_decompression_bomb_fails_before_inflating(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One chunk claiming 1 access whose body inflates to 64 MiB of zeros: the reader stops
    at the 17 bytes one access needs instead of inflating it all."""
    body = zlib.compress(bytes(64 << 20), 9)
    path = tmp_path / "bomb.trace"
    path.write_bytes(struct.pack("<8sHHIQ", b"HWLTRACE", 2, 0, 1 << 16, 1)
                     + struct.pack("<IIIB3x", 1, len(body), 0, 0) + body
                     + struct.pack("<8sQ", b"HWLTEND\0", 1))
    assert path.stat().st_size < 100_000
    assert main(["trace", "info", str(path)]) == 2
    assert capsys.readouterr().err == (f"hwloop: error: {path}: corrupt: chunk 0 at byte 24 "
                                       f"inflates past the 17 bytes of its 1 accesses\n")


def test_wrong_count_in_header_is_detected(tmp_path: Path) -> None:
    def recount(data: bytearray) -> bytearray:
        data[16:24] = struct.pack("<Q", 90_000)
        return data

    path = _damaged(tmp_path, recount)
    with pytest.raises(TraceError, match=r"corrupt: chunk 1 at byte \d+ claims 34464 "
                                         r"accesses \(65536 of 90000 read before it\)$"):
        read_trace(path)


def test_not_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "x.trace"
    path.write_text("pc,address\n0x1,0x2\n")
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value) == (f"{path}: not an hwloop trace (bad magic); a lackey log or a "
                               "Parrot csv converts with: hwloop trace import")
    with pytest.raises(TraceError) as info:
        read_trace(tmp_path / "nope.trace")
    assert str(info.value) == f"{tmp_path / 'nope.trace'}: no such trace file"


def test_a_trace_is_read_from_a_pipe(tmp_path: Path) -> None:
    """A trace on a pipe (stdin, <(...)) died with 'OSError: Illegal seek' (the reader asked
    the file for its position to name a damaged chunk's byte)."""
    import subprocess
    import sys

    records = random_trace(100_000)  # two stored chunks
    path = tmp_path / "t.trace"
    write_trace(path, records)
    data = path.read_bytes()
    for extra, expected in ((b"", None), (b"x", f"corrupt: data after the footer at byte "
                                                f"{len(data)}")):
        reader = subprocess.run(
            [sys.executable, "-c", "import sys; from hwloop.traces import read_trace; "
             "r = read_trace('/dev/stdin'); print(len(r), int(r['addr'].sum() % 997))"],
            input=data + extra, capture_output=True)
        if expected is None:
            assert reader.returncode == 0, reader.stderr
            assert reader.stdout.split() == [b"100000", str(int(records["addr"].sum() % 997)
                                                            ).encode()]
        else:
            assert reader.returncode == 1 and expected.encode() in reader.stderr
            assert b"Illegal seek" not in reader.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="no /proc/self/mem")
def test_a_read_error_is_a_trace_error_naming_the_file() -> None:
    """An I/O error while reading (a failing disk; /proc/self/mem, read at offset 0, gives
    EIO) was an OSError traceback."""
    from hwloop.traces import read_header

    for read in (read_trace, read_header):
        with pytest.raises(TraceError) as info:
            read("/proc/self/mem")
        assert str(info.value) == "/proc/self/mem: cannot read: Input/output error"


def test_future_version_is_rejected(tmp_path: Path) -> None:
    def bump(data: bytearray) -> bytearray:
        data[8:10] = struct.pack("<H", 7)
        return data

    path = _damaged(tmp_path, bump)
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value) == (f"{path}: unsupported trace version 7 "
                               f"(this hwloop reads versions 1 to 3)")


def test_a_flipped_column_mode_fails_the_checksum(tmp_path: Path) -> None:
    """Version 3's CRC covers the modes byte: a mode bit flipped to another valid mode
    decoded the payload as deltas instead of values (or back), wrong addresses and no error,
    in version 2."""
    records = random_trace(1000)
    records["addr"] = 0x10000 + np.arange(len(records)) * 8  # stored as deltas (mode 2)

    def to_values(data: bytearray) -> bytearray:
        assert data[24 + 12] == 2
        data[24 + 12] = 0
        return data

    path = _damaged(tmp_path, to_values, records)
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value) == f"{path}: corrupt: chunk 0 at byte 24 fails its checksum"


def test_version_2_files_are_still_read(tmp_path: Path) -> None:
    """Version 2: the chunk CRC is of the payload alone."""
    records = random_trace(1000)
    chunk: list[tuple[int, int]] = []

    def to_version_2(data: bytearray) -> bytearray:
        assert struct.unpack_from("<H", data, 8)[0] == 3
        n, size, _, modes = struct.unpack_from("<IIIB", data, 24)
        chunk.append((n, modes))
        payload = zlib.decompress(bytes(data[40:40 + size]))
        struct.pack_into("<H", data, 8, 2)
        struct.pack_into("<I", data, 24 + 8, zlib.crc32(payload))
        return data

    v2 = _damaged(tmp_path, to_version_2, records)
    assert np.array_equal(read_trace(v2), records)
    assert [(n, modes & ~3) for n, modes in chunk] == [(1000, 0)]


def test_version_1_files_are_still_read(tmp_path: Path) -> None:
    """Version 1: no modes byte in the chunk header, both columns always deltas."""
    records = random_trace(1000)

    def shuffled_deltas(values: np.ndarray) -> bytes:
        deltas = np.diff(values, prepend=np.uint64(0))
        return deltas.astype("<u8").view(np.uint8).reshape(-1, 8).T.tobytes()

    payload = (shuffled_deltas(records["pc"]) + shuffled_deltas(records["addr"])
               + np.packbits(records["write"]).tobytes())
    body = zlib.compress(payload)
    path = tmp_path / "v1.trace"
    path.write_bytes(struct.pack("<8sHHIQ", b"HWLTRACE", 1, 0, 65536, 1000)
                     + struct.pack("<III", 1000, len(body), zlib.crc32(payload)) + body
                     + struct.pack("<8sQ", b"HWLTEND\0", 1000))
    assert np.array_equal(read_trace(path), records)


def test_each_column_is_stored_the_smaller_way(tmp_path: Path) -> None:
    """Scattered addresses from a few PCs: plain values beat deltas; a sequential walk:
    deltas win. Either way the file is much smaller than 17 bytes per access."""
    rng = np.random.default_rng(SEED)
    records = empty_trace(65536)
    records["pc"] = 0x401000 + rng.integers(0, 8, len(records)) * 4
    records["addr"] = 0x7F0000000000 + rng.integers(0, 1 << 20, len(records)) * 64
    write_trace(tmp_path / "s.trace", records)
    modes = (tmp_path / "s.trace").read_bytes()[24 + 12]
    assert modes == 0
    records["addr"] = 0x10000 + np.arange(len(records)) * 8
    write_trace(tmp_path / "q.trace", records)
    assert (tmp_path / "q.trace").read_bytes()[24 + 12] == 2
    assert os.path.getsize(tmp_path / "s.trace") < 4 * len(records)


# -- lackey ---------------------------------------------------------------------------------

LACKEY = b"""==123== Lackey, an example Valgrind tool
==123== Copyright (C) 2002-2017, and GNU GPL'd, by Nicholas Nethercote.
==123==
 S 1ffefffd58,8
I  0401ab70,3
 L 04223f0,8
I  0401ab73,5
 S 1fff000768,8
 M 0422418,4
I  00109159,2
I  0010915b,1
 L 7ff0001000,16
I  0010915c,1
I  0010915d,3
 M 1FFF000650,4
 S 0422420,1
==123==
==123== Counted 1 call to main()
"""

EXPECTED = [  # (pc, addr, write); the S before any I line has pc 0
    (0, 0x1FFEFFFD58, 1),
    (0x401AB70, 0x4223F0, 0),
    (0x401AB73, 0x1FFF000768, 1),
    (0x401AB73, 0x422418, 0),
    (0x401AB73, 0x422418, 1),
    (0x10915B, 0x7FF0001000, 0),
    (0x10915D, 0x1FFF000650, 0),
    (0x10915D, 0x1FFF000650, 1),
    (0x10915D, 0x422420, 1),
]


def as_tuples(records: np.ndarray) -> list[tuple[int, int, int]]:
    return [(int(r["pc"]), int(r["addr"]), int(r["write"])) for r in records]


@pytest.mark.parametrize("piece", [1, 7, 64, len(LACKEY)])
def test_lackey_parser_attributes_pcs(piece: int) -> None:
    parser = LackeyParser()
    parts = [parser.feed(LACKEY[i: i + piece]) for i in range(0, len(LACKEY), piece)]
    parts.append(parser.finish())
    assert as_tuples(np.concatenate(parts)) == EXPECTED
    assert parser.instructions == 6
    assert parser.data_accesses == len(EXPECTED)


def test_lackey_start_skip_and_limit() -> None:
    parser = LackeyParser(start_pc=0x109159)
    records = np.concatenate([parser.feed(LACKEY), parser.finish()])
    assert as_tuples(records) == EXPECTED[5:]
    assert parser.before_start == 5
    parser = LackeyParser(start_pc=0x109159, skip=1, limit=2)
    records = np.concatenate([parser.feed(LACKEY), parser.finish()])
    assert as_tuples(records) == EXPECTED[6:8]
    assert parser.done and parser.skipped == 1


def test_lackey_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    path.write_bytes(b"I  0400000,3\n L 0500000,8")
    assert as_tuples(np.concatenate(list(iter_lackey(path)))) == [(0x400000, 0x500000, 0)]


def test_lackey_matches_a_line_by_line_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED)
    print(f"seed={SEED}")
    lines, expected, pc = [], [], 0
    for _ in range(20_000):
        addr = int(rng.integers(0, 2**47))
        kind = "ILSM"[int(rng.integers(0, 4))]
        if kind == "I":
            pc = addr
            lines.append(f"I  {addr:08x},{int(rng.integers(1, 16))}")
        else:
            lines.append(f" {kind} {addr:08x},{int(rng.choice([1, 2, 4, 8, 16, 32, 64]))}")
            if kind in "LM":
                expected.append((pc, addr, 0))
            if kind in "SM":
                expected.append((pc, addr, 1))
    path = tmp_path / "l.txt"
    path.write_text("\n".join(lines) + "\n")
    records = np.concatenate(list(iter_lackey(path, block=4099)))
    assert as_tuples(records) == expected


@pytest.mark.parametrize("text, message", [
    (b"I  0400000,3\nhello world\n", "l.txt:2: not a lackey line 'hello world'"),
    (b"I  0400000,3\n L 04zz000,8\n", "l.txt:2: bad hex address in ' L 04zz000,8'"),
    (b"I  0400000,3\n\n S 0400000\n", "l.txt:3: bad lackey address in ' S 0400000'"),
    # the size after the comma (decimal) was never looked at: these were read as accesses
    (b"I  0400000,3\n L 0400000,abc\n", "l.txt:2: bad lackey size in ' L 0400000,abc'"),
    (b"I  0400000,3\n L 0400000,8x\n", "l.txt:2: bad lackey size in ' L 0400000,8x'"),
    (b"I  0400000,x\n L 0400000,8\n", "l.txt:1: bad lackey size in 'I  0400000,x'"),
])
def test_lackey_bad_lines(tmp_path: Path, text: bytes, message: str) -> None:
    path = tmp_path / "l.txt"
    path.write_bytes(text)
    with pytest.raises(TraceError) as info:
        list(iter_lackey(path))
    assert str(info.value) == f"{tmp_path}/{message}"


def test_lackey_lines_ending_in_crlf(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    path.write_bytes(b"I  0400000,3\r\n L 0401000,8\r\n S 0402000,16\r\n")
    records = np.concatenate(list(iter_lackey(path)))
    assert records["addr"].tolist() == [0x401000, 0x402000]
    assert records["pc"].tolist() == [0x400000, 0x400000]


def test_lackey_bad_line_number_counts_earlier_blocks(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    path.write_bytes(b"I  0400000,3\n L 0400000,8\n" * 1000 + b"oops\n")
    with pytest.raises(TraceError, match=r"l\.txt:2001: not a lackey line 'oops'$"):
        list(iter_lackey(path, block=100))


# -- csv ------------------------------------------------------------------------------------

def test_csv_round_trip(tmp_path: Path) -> None:
    records = random_trace(70_000)
    count = write_csv(tmp_path / "t.csv", iter_trace_chunks_of(records), with_kind=True)
    assert count == len(records)
    back = np.concatenate(list(iter_csv(tmp_path / "t.csv")))
    assert np.array_equal(back, records)
    write_csv(tmp_path / "p.csv", [records[:3]])
    first = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert first == f"0x{int(records[0]['pc']):x},0x{int(records[0]['addr']):x}"
    parrot = np.concatenate(list(iter_csv(tmp_path / "p.csv")))
    assert np.array_equal(parrot["addr"], records["addr"][:3]) and not parrot["write"].any()


def iter_trace_chunks_of(records: np.ndarray, size: int = 30_000):  # type: ignore[no-untyped-def]
    for start in range(0, len(records), size):
        yield records[start: start + size]


def test_csv_accepts_header_and_bare_hex(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("pc,address\n4005d8,7ffd5d5c2c70\n# comment\n\n0x1, 0X2 ,W\n")
    assert as_tuples(np.concatenate(list(iter_csv(path)))) == [
        (0x4005D8, 0x7FFD5D5C2C70, 0), (1, 2, 1)]


@pytest.mark.parametrize("line, message", [
    ("0x1,zz", "bad hex address 'zz'"),
    ("q1,0x2", "bad hex pc 'q1'"),
    ("0x1", "expected 'pc,address' or 'pc,address,r|w', got 1 fields"),
    ("0x1,0x2,x", "bad access kind 'x' (want r or w)"),
    ("0x1,0x11112222333344445", "bad hex address '0x11112222333344445'"),
    # the whole 200,000-digit field was in the message (as lackey lines, cut at 60)
    ("0x1," + "1" * 200_000, "bad hex address '" + "1" * 57 + "...'"),
    ("0x1,0x2," + "w" * 200_000, "bad access kind '" + "w" * 57 + "...' (want r or w)"),
])
def test_csv_bad_lines(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text("pc,address\n" + "0x1,0x2\n" * 5 + line + "\n")
    with pytest.raises(TraceError) as info:
        list(iter_csv(path))
    assert str(info.value) == f"{path}:7: {message}"


def test_cli_import_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = random_trace(1000)
    trace = tmp_path / "t.trace"
    write_trace(trace, records)
    assert main(["trace", "export", str(trace), "--format", "csv", "-o",
                 str(tmp_path / "t.csv"), "--with-kind"]) == 0
    assert main(["trace", "import", str(tmp_path / "t.csv"), "--format", "csv", "-o",
                 str(tmp_path / "u.trace")]) == 0
    assert np.array_equal(read_trace(tmp_path / "u.trace"), records)
    assert main(["trace", "import", str(tmp_path / "t.csv"), "--format", "csv", "--max", "10",
                 "-o", str(tmp_path / "v.trace")]) == 0
    assert np.array_equal(read_trace(tmp_path / "v.trace"), records[:10])
    lackey = tmp_path / "l.txt"
    lackey.write_bytes(LACKEY)
    assert main(["trace", "import", str(lackey), "--format", "lackey", "-o",
                 str(tmp_path / "l.trace")]) == 0
    assert as_tuples(read_trace(tmp_path / "l.trace")) == EXPECTED


def test_cli_export_to_standard_output(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    records = random_trace(1000)
    trace = tmp_path / "t.trace"
    write_trace(trace, records)
    assert main(["trace", "export", str(trace), "--format", "csv", "-o",
                 str(tmp_path / "t.csv"), "--with-kind"]) == 0
    capsys.readouterr()
    assert main(["trace", "export", str(trace), "--format", "csv", "-o", "-",
                 "--with-kind"]) == 0
    out, err = capsys.readouterr()
    assert out == (tmp_path / "t.csv").read_text()
    assert err == "wrote 1000 accesses to standard output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.trace"]  # no file '-'


def test_cli_bad_csv_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("0x1,0x2\n" * 100_000 + "0x3,0xgg\n")
    out = tmp_path / "out.trace"
    assert main(["trace", "import", str(bad), "--format", "csv", "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"hwloop: error: {bad}:100001: bad hex address '0xgg'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_cli_output_of_the_wrong_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("0x1,0x2\n")
    trace = tmp_path / "t.trace"
    write_trace(trace, random_trace(10))
    folder = tmp_path / "folder"
    folder.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = [
        (["trace", "import", str(csv), "--format", "csv", "-o", str(folder)],
         f"{folder}: is a directory; name a trace file to write"),
        (["trace", "export", str(trace), "--format", "csv", "-o", str(folder)],
         f"{folder}: is a directory; name a csv file to write"),
        (["trace", "import", str(csv), "--format", "csv", "-o", str(csv / "x.trace")],
         f"{csv / 'x.trace'}: {csv} is a file, not a folder"),
        (["trace", "export", str(trace), "--format", "csv", "-o", str(csv / "x.csv")],
         f"{csv / 'x.csv'}: {csv} is a file, not a folder"),
        (["trace", "import", str(csv), "--format", "csv", "-o", str(fifo)],
         f"{fifo}: is not a regular file; name a trace file to write"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert capsys.readouterr().err == f"hwloop: error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert list(folder.iterdir()) == []


def test_cli_corrupt_trace_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    path = _damaged(tmp_path, lambda d: d[:100])
    assert main(["trace", "info", str(path)]) == 2
    assert capsys.readouterr().err == (f"hwloop: error: {path}: truncated: header promises "
                                       f"100000 accesses, file ends after 0\n")
    assert main(["trace", "export", str(path), "--format", "csv", "-o",
                 str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.csv").exists()


# -- info -----------------------------------------------------------------------------------

def test_info_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = empty_trace(6)
    records["pc"] = [1, 1, 2, 3, 3, 3]
    records["addr"] = [0, 63, 64, 128, 130, 4096]
    records["write"] = [0, 1, 0, 0, 1, 1]
    path = tmp_path / "t.trace"
    write_trace(path, records)
    info = trace_info(path)
    assert {k: info[k] for k in ("accesses", "reads", "writes", "unique_lines", "unique_pcs")} \
        == {"accesses": 6, "reads": 3, "writes": 3, "unique_lines": 4, "unique_pcs": 3}
    assert trace_info(path, line_bytes=4096)["unique_lines"] == 2
    assert main(["trace", "info", str(path), "--json", "--line-bytes", "128"]) == 0
    assert '"unique_lines": 3' in capsys.readouterr().out
    assert main(["trace", "info", str(path), "--line-bytes", "48"]) == 2
    assert "--line-bytes must be a power of two, not 48" in capsys.readouterr().err


def test_info_of_a_pipe_has_no_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                    ) -> None:
    """A trace read from a pipe was reported as "0 bytes (0.00 bytes/access)": the size of a
    FIFO on disk, not of the trace."""
    path = tmp_path / "t.trace"
    write_trace(path, random_trace(10))
    assert trace_info(path)["file_bytes"] == path.stat().st_size
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(path.read_bytes())

    for argv in (["trace", "info", str(fifo)], ["trace", "info", str(fifo), "--json"]):
        writer = threading.Thread(target=feed)
        writer.start()
        assert main(argv) == 0
        writer.join()
        out = capsys.readouterr().out
        assert "accesses       10" in out or '"accesses": 10' in out
        assert ("file           not a regular file (no size)" in out
                or '"file_bytes": null' in out)


# -- L1 filter ------------------------------------------------------------------------------

def reference_lru_misses(records: np.ndarray, *, sets: int, ways: int, line: int) -> list[int]:
    """Indices of the accesses that miss in a plain-Python LRU cache."""
    cache = [OrderedDict() for _ in range(sets)]  # type: ignore[var-annotated]
    misses = []
    for i, addr in enumerate(records["addr"].tolist()):
        tag = addr // line
        lines = cache[tag % sets]
        if tag in lines:
            lines.move_to_end(tag)
        else:
            misses.append(i)
            lines[tag] = True
            if len(lines) > ways:
                lines.popitem(last=False)
    return misses


@pytest.mark.parametrize("block", [1, 333, 5000, 100_000])
def test_l1_filter_in_blocks_is_exact(block: int) -> None:
    rng = np.random.default_rng(SEED + block)
    print(f"seed={SEED + block}")
    n = 3_000 if block == 1 else 60_000
    records = empty_trace(n)
    hot = rng.integers(0, 96, n) * 64
    cold = rng.integers(0, 1 << 24, n) * 8
    records["addr"] = np.where(rng.random(n) < 0.8, hot, cold).astype(np.uint64)
    records["pc"] = np.arange(n)
    expected = reference_lru_misses(records, sets=16, ways=4, line=64)
    l1 = L1Filter.from_spec("4K:4:64")
    out = np.concatenate([l1(records[i: i + block]) for i in range(0, n, block)])
    assert out["pc"].tolist() == expected
    assert 0.1 < len(expected) / n < 0.9  # the test exercises both hits and misses
    assert l1.accesses == n and l1.misses == len(expected)


@pytest.mark.parametrize("spec, message", [
    ("32K:8", "--l1 must be SIZE:WAYS:LINE like 32K:8:64, not '32K:8'"),
    ("32K:x:64", "--l1 must be SIZE:WAYS:LINE like 32K:8:64, not '32K:x:64'"),
    ("32K:8:48", "--l1 line size must be a power of two, not 48"),
    ("33K:8:64", "--l1 gives 66 sets, which is not a power of two"),
    ("1000:8:64", "--l1 size 1000 is not a multiple of ways x line (8 x 64)"),
    ("32K:0:64", "--l1 ways must be positive, not 0"),
    ("0:8:64", "--l1 size must be positive, not 0"),
    # the model's limits, named as --l1's (they were the bare CacheConfig messages)
    ("1M:128:64", "--l1 ways must be an integer in 1..64, not 128"),
    ("1G:1:64", "--l1 sets must be at most 1048576, not 16777216"),
    ("64K:1:8192", "--l1 line_bytes must be at most 4096, not 8192"),
])
def test_l1_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_cache_spec(spec)
    assert str(info.value) == message


def test_l1_spec_sizes() -> None:
    assert parse_cache_spec("32K:8:64") == (32768, 8, 64)
    assert parse_cache_spec("1MiB:16:64") == (1 << 20, 16, 64)
    assert parse_cache_spec("4096:1:32") == (4096, 1, 32)


def test_cli_output_that_is_the_input_is_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.trace"
    write_trace(trace, random_trace(10))
    csv = tmp_path / "t.csv"
    csv.write_text("0x1,0x2,w\n")
    os.link(trace, tmp_path / "hard.trace")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    cases = [
        (["trace", "export", str(trace), "--format", "csv", "-o", str(trace)],
         f"{trace}: is the trace being exported; name another csv file to write"),
        (["trace", "export", str(trace), "--format", "csv", "-o",
          str(tmp_path / "." / "hard.trace")],
         f"{tmp_path / 'hard.trace'}: is the trace being exported; name another csv file to "
         f"write"),
        (["trace", "import", str(csv), "--format", "csv", "-o", str(csv)],
         f"{csv}: is the file being imported; name another trace file to write"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert capsys.readouterr().err == f"hwloop: error: {message}\n"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_cli_import_input_of_the_wrong_kind(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    trace = tmp_path / "t.trace"
    write_trace(trace, random_trace(10))
    for path, message in ((folder, f"{folder}: is a directory, not a file to import"),
                          (tmp_path / "nope.csv", f"{tmp_path / 'nope.csv'}: no such file"),
                          (trace, f"{trace}: is a .trace file (binary), not csv; it needs no "
                                  f"import")):
        assert main(["trace", "import", str(path), "--format", "csv", "-o",
                     str(tmp_path / "x.trace")]) == 2
        assert capsys.readouterr().err == f"hwloop: error: {message}\n"
    assert not (tmp_path / "x.trace").exists()


def test_csv_with_a_byte_order_mark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfpc,address\r\n0x1,0x2\r\n")
    assert as_tuples(np.concatenate(list(iter_csv(path)))) == [(1, 2, 0)]
    path.write_bytes(b"\xef\xbb\xbf0x1,0x2\n")  # no header
    assert as_tuples(np.concatenate(list(iter_csv(path)))) == [(1, 2, 0)]
    assert main(["trace", "import", str(path), "--format", "csv", "-o",
                 str(tmp_path / "one.trace")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'one.trace'}: 1 access\n"


def test_cli_capture_without_a_program_and_recipes_list_of_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "capture", "-o", str(tmp_path / "x.trace")]) == 2
    assert capsys.readouterr().err == ("hwloop: error: name the program to trace: hwloop "
                                       "trace capture -o FILE -- PROGRAM [ARGS ...]\n")
    assert main(["trace", "recipes", "sort", "--list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sort ") and len(out.splitlines()) == 1
    assert main(["trace", "recipes", "bogus", "--list"]) == 2
    assert "unknown recipe 'bogus'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
