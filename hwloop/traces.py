"""Memory traces: the ``.trace`` file format, its reader and writer, and text formats.

A trace is a sequence of data accesses, each a record of :data:`TRACE_DTYPE`: the program
counter of the instruction that made it, the byte address and whether it was a write.

File format (version 3, all integers little-endian)::

    header   magic b"HWLTRACE" | u16 version | u16 flags (0) | u32 chunk records | u64 count
    chunk*   u32 records n | u32 compressed bytes | u32 CRC-32 of the modes byte and the
             uncompressed payload | u8 column modes | 3 bytes 0 | zlib(payload)
    footer   b"HWLTEND\\0" | u64 count

A payload holds the n PCs, then the n addresses, byte-shuffled (all low bytes, then all next
bytes, ...) so that zlib sees long runs of equal bytes, then the n write flags as packed bits.
Each of the PC and address columns is stored either as values or as wrapping 64-bit deltas
from the previous record of the chunk (the first from 0), whichever compresses better on a
sample; bit 0 (PCs) and bit 1 (addresses) of the modes byte say which. Version 2 files (the
CRC of the payload alone) and version 1 files (no modes byte, always deltas) are still read.
Chunks are independent, so a trace is read in bounded memory (:func:`iter_trace_chunks`). The
count in header and footer, the chunk CRCs and the footer's position detect truncated and
corrupt files.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TextIO

import numpy as np

from hwloop.errors import TraceError
from hwloop.paths import check_folder_path, mkstemp

TRACE_DTYPE = np.dtype([("pc", "<u8"), ("addr", "<u8"), ("write", "u1")])

MAGIC = b"HWLTRACE"
FOOTER_MAGIC = b"HWLTEND\0"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
CHUNK_RECORDS = 1 << 16

_HEADER = struct.Struct("<8sHHIQ")
_CHUNK = struct.Struct("<IIIB3x")     # versions 2 and 3: n, bytes, crc, column modes
_CHUNK_V1 = struct.Struct("<III")      # version 1: always deltas
_PC_DELTA, _ADDR_DELTA = 1, 2
_SAMPLE = 4096
_FOOTER = struct.Struct("<8sQ")
_ZLIB_LEVEL = 1


def empty_trace(n: int = 0) -> np.ndarray:
    """A zeroed trace of ``n`` records."""
    return np.zeros(n, dtype=TRACE_DTYPE)


def as_trace(records: np.ndarray) -> np.ndarray:
    """``records`` as a contiguous array of :data:`TRACE_DTYPE` (fields matched by name)."""
    if records.dtype == TRACE_DTYPE:
        return np.ascontiguousarray(records)
    names = records.dtype.names or ()
    missing = [name for name in TRACE_DTYPE.names if name not in names]
    if missing:
        raise TypeError(f"trace records need fields pc, addr, write; missing {', '.join(missing)}")
    out = empty_trace(len(records))
    for name in TRACE_DTYPE.names:
        out[name] = records[name]
    return out


# -- encoding -------------------------------------------------------------------------------

def _shuffled(values: np.ndarray) -> bytes:
    return values.view(np.uint8).reshape(-1, 8).T.tobytes()


def _deltas(values: np.ndarray) -> np.ndarray:
    deltas = np.empty_like(values)
    deltas[0] = values[0]
    np.subtract(values[1:], values[:-1], out=deltas[1:])  # wraps modulo 2**64
    return deltas


def _column(values: np.ndarray) -> tuple[bytes, bool]:
    """The column byte-shuffled, as values or as deltas, whichever compresses better on a
    sample (deltas win on sequential streams, plain values on scattered ones)."""
    values = np.ascontiguousarray(values, dtype="<u8")
    deltas = _deltas(values)
    sample_plain = len(zlib.compress(_shuffled(values[:_SAMPLE]), _ZLIB_LEVEL))
    sample_delta = len(zlib.compress(_shuffled(deltas[:_SAMPLE]), _ZLIB_LEVEL))
    if sample_delta < sample_plain:
        return _shuffled(deltas), True
    return _shuffled(values), False


def _unshuffled(data: bytes, n: int, delta: bool) -> np.ndarray:
    values = np.frombuffer(data, dtype=np.uint8).reshape(8, n).T.copy().view("<u8").ravel()
    return np.cumsum(values, dtype=np.uint64) if delta else values


def _encode_chunk(records: np.ndarray) -> bytes:
    n = len(records)
    pcs, pc_delta = _column(records["pc"])
    addrs, addr_delta = _column(records["addr"])
    payload = b"".join((pcs, addrs, np.packbits(records["write"] != 0).tobytes()))
    body = zlib.compress(payload, _ZLIB_LEVEL)
    mode = (_PC_DELTA if pc_delta else 0) | (_ADDR_DELTA if addr_delta else 0)
    return _CHUNK.pack(n, len(body), _chunk_crc(mode, payload), mode) + body


def _chunk_crc(mode: int, payload: bytes) -> int:
    """Version 3's chunk CRC: of the modes byte, then the payload. The modes byte says how the
    payload decodes (values or deltas), so a flipped mode bit must fail the check too."""
    return zlib.crc32(payload, zlib.crc32(bytes((mode,))))


def _payload_size(n: int) -> int:
    """The bytes of an uncompressed payload of ``n`` records."""
    return 16 * n + (n + 7) // 8


def _decode_payload(payload: bytes, n: int, mode: int) -> np.ndarray | None:
    """Decode one chunk payload, or None if its length does not fit ``n`` records."""
    if len(payload) != _payload_size(n):
        return None
    out = empty_trace(n)
    out["pc"] = _unshuffled(payload[: 8 * n], n, bool(mode & _PC_DELTA))
    out["addr"] = _unshuffled(payload[8 * n: 16 * n], n, bool(mode & _ADDR_DELTA))
    flags = np.frombuffer(payload[16 * n:], dtype=np.uint8)
    out["write"] = np.unpackbits(flags, count=n)
    return out


# -- writing --------------------------------------------------------------------------------

def output_directory(path: Path, what: str) -> Path:
    """The folder of the file to write at ``path``, checked up front: no work (a whole capture)
    is done for the final rename to fail, and no device node is replaced. ``what`` names the
    file in the message ("a trace file")."""
    directory = path.parent if str(path.parent) else Path(".")
    check_folder_path(path, name=str(path), error=TraceError, parents_only=True)
    if not directory.is_dir():
        raise TraceError(f"{path}: directory {directory} does not exist")
    if path.is_dir():
        raise TraceError(f"{path}: is a directory; name {what} to write")
    if path.exists() and not path.is_file():
        raise TraceError(f"{path}: is not a regular file; name {what} to write")
    return directory


class TraceWriter:
    """Writes a trace incrementally, in bounded memory, and publishes it atomically.

    Records go to a temporary file next to ``path``; :meth:`close` completes the file and
    renames it onto ``path``. If the writer is left through an exception (or :meth:`abort`),
    the temporary file is removed and ``path`` is untouched::

        with TraceWriter("out.trace") as writer:
            for records in chunks:
                writer.append(records)
    """

    def __init__(self, path: str | Path, *, chunk_records: int = CHUNK_RECORDS):
        if chunk_records <= 0:
            raise ValueError(f"chunk_records must be positive, not {chunk_records}")
        self.path = Path(path)
        self.chunk_records = chunk_records
        self.count = 0
        self._pending: list[np.ndarray] = []
        self._pending_count = 0
        directory = output_directory(self.path, "a trace file")
        fd, tmp = mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        self._tmp = Path(tmp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._file.write(_HEADER.pack(MAGIC, VERSION, 0, chunk_records, 0))

    @property
    def records(self) -> int:
        """Records appended so far (written or still buffered)."""
        return self.count + self._pending_count

    def append(self, records: np.ndarray) -> None:
        """Add records (any array with fields pc, addr, write)."""
        if self._file is None:
            raise ValueError("append() on a closed TraceWriter")
        if len(records) == 0:
            return
        self._pending.append(as_trace(records))
        self._pending_count += len(records)
        if self._pending_count >= self.chunk_records:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        assert self._file is not None
        if not self._pending:
            return
        joined = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        full = len(joined) - len(joined) % self.chunk_records if not final else len(joined)
        for start in range(0, full, self.chunk_records):
            part = joined[start: start + self.chunk_records]
            self._file.write(_encode_chunk(part))
            self.count += len(part)
        rest = joined[full:]
        self._pending = [rest] if len(rest) else []
        self._pending_count = len(rest)

    def close(self) -> None:
        """Finish the file and rename it onto ``path``."""
        if self._file is None:
            return
        try:
            self._flush(final=True)
            self._file.write(_FOOTER.pack(FOOTER_MAGIC, self.count))
            self._file.seek(0)
            self._file.write(_HEADER.pack(MAGIC, VERSION, 0, self.chunk_records, self.count))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything written so far; ``path`` is left as it was."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_trace(path: str | Path, records: np.ndarray | Iterable[np.ndarray]) -> int:
    """Write ``records`` (one array, or an iterable of arrays) to ``path`` atomically.

    Returns the number of records written.
    """
    with TraceWriter(path) as writer:
        if isinstance(records, np.ndarray):
            writer.append(records)
        else:
            for part in records:
                writer.append(part)
    return writer.count


# -- reading --------------------------------------------------------------------------------

def _read_exact(handle: BinaryIO, size: int) -> bytes:
    try:
        return handle.read(size)
    except OSError as exc:  # a failing disk; a file that is no stream (/proc/self/mem: EIO)
        raise TraceError(f"{handle.name}: cannot read: {exc.strerror or exc}") from None


def read_header(path: str | Path) -> int:
    """The number of accesses a trace file says it holds (checks magic and version only)."""
    with _open(path) as handle:
        return _check_header(path, handle)[0]


def _open(path: str | Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, not a trace file") from None
    except PermissionError:
        raise TraceError(f"{path}: permission denied") from None
    except OSError as exc:  # a symbolic link loop (ELOOP), a name too long, ...
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _check_header(path: str | Path, handle: BinaryIO) -> tuple[int, int]:
    head = _read_exact(handle, _HEADER.size)
    if len(head) < len(MAGIC) or head[: len(MAGIC)] != MAGIC:
        raise TraceError(f"{path}: not an hwloop trace (bad magic); a lackey log or a Parrot "
                         f"csv converts with: hwloop trace import")
    if len(head) < _HEADER.size:
        raise TraceError(f"{path}: truncated: header is {len(head)} of {_HEADER.size} bytes")
    _, version, _flags, _chunk, count = _HEADER.unpack(head)
    if version not in READABLE_VERSIONS:
        raise TraceError(f"{path}: unsupported trace version {version} "
                         f"(this hwloop reads versions 1 to 3)")
    return int(count), int(version)


def iter_trace_chunks(path: str | Path, chunk: int = CHUNK_RECORDS) -> Iterator[np.ndarray]:
    """Yield the trace's records in arrays of ``chunk`` records (the last may be shorter).

    Memory stays bounded by ``chunk`` plus one stored chunk. Every stored chunk is checked
    (CRC and length) as it is read; a truncated or corrupt file raises :class:`TraceError`
    when the reader reaches the damage, so a consumer may have seen earlier records.
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, not {chunk}")
    pending: list[np.ndarray] = []
    pending_count = 0
    for stored in _iter_stored_chunks(path):
        pending.append(stored)
        pending_count += len(stored)
        while pending_count >= chunk:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield joined[:chunk]
            rest = joined[chunk:]
            pending = [rest] if len(rest) else []
            pending_count = len(rest)
    if pending_count:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


def _iter_stored_chunks(path: str | Path) -> Iterator[np.ndarray]:
    with _open(path) as handle:
        count, version = _check_header(path, handle)
        chunk_header = _CHUNK if version >= 2 else _CHUNK_V1
        seen = 0
        index = 0
        offset = _HEADER.size  # counted, not handle.tell(): a pipe cannot tell (ESPIPE)
        while True:
            if seen == count:
                _check_footer(path, handle, count, offset)
                return
            head = _read_exact(handle, chunk_header.size)
            if len(head) < chunk_header.size:
                raise TraceError(f"{path}: truncated: header promises {count} accesses, "
                                 f"file ends after {seen}")
            n, size, crc, *mode = chunk_header.unpack(head)
            modes = mode[0] if mode else _PC_DELTA | _ADDR_DELTA
            if modes & ~(_PC_DELTA | _ADDR_DELTA):  # (before inflating: named, not a CRC)
                raise TraceError(f"{path}: corrupt: chunk {index} at byte {offset} has "
                                 f"unknown column modes 0x{modes:02x}")
            if n == 0 or seen + n > count:
                raise TraceError(f"{path}: corrupt: chunk {index} at byte {offset} claims {n} "
                                 f"accesses ({seen} of {count} read before it)")
            body = _read_exact(handle, size)
            if len(body) < size:
                raise TraceError(f"{path}: truncated: header promises {count} accesses, "
                                 f"file ends after {seen}")
            expected = _payload_size(n)
            try:
                # bounded: a small body must not inflate past what n records need (a bomb)
                payload = zlib.decompressobj().decompress(body, expected + 1)
            except zlib.error:
                payload = b""
                decoded = None
            else:
                if len(payload) > expected:
                    raise TraceError(f"{path}: corrupt: chunk {index} at byte {offset} inflates "
                                     f"past the {expected} bytes of its {n} accesses")
                # versions 1 and 2: the CRC of the payload alone
                good = crc == (_chunk_crc(modes, payload) if version >= 3
                               else zlib.crc32(payload))
                decoded = _decode_payload(payload, n, modes) if good else None
            if decoded is None:
                raise TraceError(f"{path}: corrupt: chunk {index} at byte {offset} fails "
                                 f"its checksum")
            seen += n
            index += 1
            offset += chunk_header.size + size
            yield decoded


def _check_footer(path: str | Path, handle: BinaryIO, count: int, offset: int) -> None:
    """The footer at byte ``offset``, and nothing after it."""
    tail = _read_exact(handle, _FOOTER.size)
    if len(tail) < _FOOTER.size:
        raise TraceError(f"{path}: truncated: footer is {len(tail)} of {_FOOTER.size} bytes")
    magic, footer_count = _FOOTER.unpack(tail)
    if magic != FOOTER_MAGIC:
        raise TraceError(f"{path}: corrupt: no footer after {count} accesses")
    if footer_count != count:
        raise TraceError(f"{path}: corrupt: header says {count} accesses, "
                         f"footer says {footer_count}")
    if handle.read(1):
        raise TraceError(f"{path}: corrupt: data after the footer at byte "
                         f"{offset + _FOOTER.size}")


def read_trace(path: str | Path) -> np.ndarray:
    """The whole trace at ``path`` as one array of :data:`TRACE_DTYPE`."""
    parts = list(_iter_stored_chunks(path))
    if not parts:
        return empty_trace()
    return np.concatenate(parts)


# -- valgrind lackey text -------------------------------------------------------------------

_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i
_KIND_I, _KIND_L, _KIND_S, _KIND_M = 1, 2, 3, 4
_KIND_OF_PREFIX = np.zeros(1 << 16, dtype=np.uint8)  # first two bytes of a line -> kind
for _prefix, _kind in ((b"I ", _KIND_I), (b" L", _KIND_L), (b" S", _KIND_S), (b" M", _KIND_M)):
    _KIND_OF_PREFIX[_prefix[0] << 8 | _prefix[1]] = _kind


class LackeyParser:
    """Turns ``valgrind --tool=lackey --trace-mem=yes`` output into trace records.

    Lackey prints ``I  addr,size`` for every instruction and `` L``/`` S``/`` M addr,size``
    for data loads, stores and modifies (load then store); data lines carry no PC, so each
    access gets the address of the last ``I`` line before it. ``M`` becomes two records.
    Valgrind's own ``==pid==`` lines and blank lines are ignored; any other line is an error
    naming ``source:line``.

    Feed the text in pieces of any size (:meth:`feed`, then :meth:`finish`); parsing is
    vectorised with numpy, a whole piece at a time, so memory is bounded by the piece size.

    ``start_pc``: drop everything before the first instruction at this address (e.g. ``main``).
    ``skip``: then drop this many data accesses. ``limit``: stop after this many records
    (:attr:`done` turns true).
    """

    def __init__(self, *, source: str = "<lackey>", start_pc: int | None = None,
                 skip: int = 0, limit: int | None = None):
        self.source = source
        self.start_pc = start_pc
        self.started = start_pc is None
        self.skip_left = skip
        self.limit = limit
        self.emitted = 0
        self.lines = 0           # complete lines consumed so far
        self.instructions = 0    # I lines seen (before skipping)
        self.before_start = 0    # data accesses dropped before start_pc
        self.skipped = 0         # data accesses dropped by skip
        self.data_accesses = 0   # data accesses parsed (M counts twice), all of them
        self._pc = 0
        self._rest = b""

    @property
    def done(self) -> bool:
        return self.limit is not None and self.emitted >= self.limit

    def feed(self, data: bytes) -> np.ndarray:
        """Parse the complete lines in ``self``'s buffer plus ``data``; keep the rest."""
        if self.done:
            return empty_trace()
        cut = data.rfind(b"\n")
        if cut < 0:
            self._rest += data
            return empty_trace()
        text = self._rest + data[: cut + 1] if self._rest else data[: cut + 1]
        self._rest = data[cut + 1:]
        return self._parse(text)

    def finish(self) -> np.ndarray:
        """Parse a last line without a newline, if any."""
        rest, self._rest = self._rest, b""
        if not rest.strip() or self.done:
            return empty_trace()
        return self._parse(rest + b"\n")

    def _error(self, line_index: int, text: bytes, reason: str) -> TraceError:
        starts = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10)
        begin = 0 if line_index == 0 else int(starts[line_index - 1]) + 1
        end = int(starts[line_index])
        shown = text[begin:end].decode("utf-8", "replace")
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return TraceError(f"{self.source}:{self.lines + line_index + 1}: {reason} {shown!r}")

    def _parse(self, text: bytes) -> np.ndarray:
        buf = np.frombuffer(text, dtype=np.uint8)
        ends = np.flatnonzero(buf == 10)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        lengths = ends - starts
        padded = np.concatenate((np.full(4, 10, dtype=np.uint8), buf, np.zeros(2, np.uint8)))
        starts4 = starts + 4
        c0 = padded[starts4].astype(np.uint16)
        kind = _KIND_OF_PREFIX[(c0 << 8) | padded[starts4 + 1]]
        kind[padded[starts4 + 2] != ord(" ")] = 0
        ignorable = (lengths == 0) | (c0 == ord("="))
        unknown = ~ignorable & (kind == 0)
        if np.any(unknown):
            raise self._error(int(np.flatnonzero(unknown)[0]), text, "not a lackey line")
        lines = np.flatnonzero(kind)
        kind = kind[lines]
        first = starts[lines] + 3
        line_end = ends[lines] + 4
        # "addr,size": the size has 1 to 3 digits, so the comma is 2 to 4 bytes before the end
        comma = np.where(padded[line_end - 2] == ord(","), line_end - 2,
                         np.where(padded[line_end - 3] == ord(","), line_end - 3, line_end - 4))
        comma -= 4
        digits = comma - first
        bad_line = (buf[np.maximum(comma, 0)] != ord(",")) | (digits < 1) | (digits > 16)
        if np.any(bad_line):
            raise self._error(int(lines[np.flatnonzero(bad_line)[0]]), text,
                              "bad lackey address in")
        # the size: decimal digits up to the newline (a '\r' before it, from CRLF, is kept)
        end = ends[lines]
        bad_size = np.zeros(len(lines), dtype=bool)
        for offset in (1, 2, 3):
            position = comma + offset
            inside = position < end
            char = buf[np.where(inside, position, 0)]
            digit = (char >= ord("0")) & (char <= ord("9"))
            crlf = (char == ord("\r")) & (position == end - 1) & (offset > 1)
            bad_size |= inside & ~digit & ~crlf
        if np.any(bad_size):
            raise self._error(int(lines[np.flatnonzero(bad_size)[0]]), text,
                              "bad lackey size in")
        values = np.zeros(len(lines), dtype=np.uint64)
        seen = np.zeros(len(lines), dtype=np.uint8)  # OR of all nibbles: > 15 if a bad digit
        width = int(digits.max()) if len(digits) else 0
        always = int(digits.min()) if len(digits) else 0  # columns every line has
        for column in range(width):
            position = comma - width + column
            if column >= width - always:
                nibble = _NIBBLE[buf[position]]
            else:
                used = position >= first
                nibble = np.where(used, _NIBBLE[buf[np.where(used, position, 0)]], 0)
            seen |= nibble
            values <<= np.uint64(4)
            values |= nibble
        if np.any(seen > 15):
            raise self._error(int(lines[np.flatnonzero(seen > 15)[0]]), text,
                              "bad hex address in")
        self.lines += len(ends)
        return self._records(kind, values)

    def _records(self, kind: np.ndarray, values: np.ndarray) -> np.ndarray:
        is_instr = kind == _KIND_I
        self.instructions += int(is_instr.sum())
        if not self.started:
            hits = np.flatnonzero(is_instr & (values == np.uint64(self.start_pc)))
            before = kind[: hits[0]] if len(hits) else kind
            dropped = int(np.count_nonzero(before != _KIND_I) + np.count_nonzero(
                before == _KIND_M))
            self.before_start += dropped
            self.data_accesses += dropped
            if not len(hits):
                if np.any(is_instr):
                    self._pc = int(values[np.flatnonzero(is_instr)[-1]])
                return empty_trace()
            self.started = True
            kind = kind[hits[0]:]
            values = values[hits[0]:]
            is_instr = is_instr[hits[0]:]
        index = np.where(is_instr, np.arange(len(kind)), -1)
        last = np.maximum.accumulate(index) if len(index) else index
        data = np.flatnonzero(~is_instr)
        last_instr = last[data]
        pcs = np.where(last_instr >= 0, values[np.maximum(last_instr, 0)], np.uint64(self._pc))
        if np.any(is_instr):
            self._pc = int(values[np.flatnonzero(is_instr)[-1]])
        data_kind = kind[data]
        counts = np.where(data_kind == _KIND_M, 2, 1)
        total = int(counts.sum())
        self.data_accesses += total
        owner = np.repeat(np.arange(len(data)), counts)
        second = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        out = empty_trace(total)
        out["pc"] = pcs[owner]
        out["addr"] = values[data][owner]
        out["write"] = (data_kind[owner] == _KIND_S) | (second == 1)
        if self.skip_left:
            dropped = min(self.skip_left, total)
            self.skip_left -= dropped
            self.skipped += dropped
            out = out[dropped:]
        if self.limit is not None:
            out = out[: self.limit - self.emitted]
        self.emitted += len(out)
        return out


def iter_lackey(path: str | Path, *, block: int = 1 << 17, **options: object
                ) -> Iterator[np.ndarray]:
    """Parse a lackey text file in bounded memory; ``options`` go to :class:`LackeyParser`."""
    parser = LackeyParser(source=str(path), **options)  # type: ignore[arg-type]
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        while not parser.done:
            data = handle.read(block)
            if not data:
                break
            records = parser.feed(data)
            if len(records):
                yield records
    records = parser.finish()
    if len(records):
        yield records


# -- Parrot csv -----------------------------------------------------------------------------

_CSV_WRITE_FLAGS = {"w": 1, "W": 1, "1": 1, "r": 0, "R": 0, "0": 0}


def _shown(text: str) -> str:
    """A field as an error message shows it: cut at 60 characters (as lackey lines are)."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _parse_hex(text: str, path: str | Path, line: int, what: str) -> int:
    token = text.strip()
    digits = token[2:] if token[:2] in ("0x", "0X") else token
    if not digits or len(digits) > 16 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise TraceError(f"{path}:{line}: bad hex {what} {_shown(token)}")
    return int(digits, 16)


def iter_csv(path: str | Path, *, block: int = CHUNK_RECORDS) -> Iterator[np.ndarray]:
    """Parse a Parrot-style csv trace (``pc,address`` in hex, one access per line).

    An optional third column marks writes (``w``/``W``/``1``) or reads (``r``/``R``/``0``);
    without it every access is a read. A first line ``pc,address[,...]`` is a header.
    Blank lines and lines starting with ``#`` are skipped.
    """
    try:
        # utf-8-sig: a byte-order mark (what Excel writes) is not part of the first field
        handle = open(path, encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        if handle.buffer.peek(len(MAGIC))[:len(MAGIC)] == MAGIC:
            raise TraceError(f"{path}: is a .trace file (binary), not csv; it needs no import")
        pcs: list[int] = []
        addrs: list[int] = []
        writes: list[int] = []
        for number, line in enumerate(handle, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            fields = stripped.split(",")
            if number == 1 and fields[0].strip().lower() == "pc":
                continue
            if len(fields) not in (2, 3):
                raise TraceError(f"{path}:{number}: expected 'pc,address' or "
                                 f"'pc,address,r|w', got {len(fields)} fields")
            pcs.append(_parse_hex(fields[0], path, number, "pc"))
            addrs.append(_parse_hex(fields[1], path, number, "address"))
            if len(fields) == 3:
                flag = _CSV_WRITE_FLAGS.get(fields[2].strip())
                if flag is None:
                    raise TraceError(f"{path}:{number}: bad access kind "
                                     f"{_shown(fields[2].strip())} (want r or w)")
                writes.append(flag)
            else:
                writes.append(0)
            if len(pcs) >= block:
                yield _records_from_lists(pcs, addrs, writes)
                pcs, addrs, writes = [], [], []
        if pcs:
            yield _records_from_lists(pcs, addrs, writes)


def _records_from_lists(pcs: list[int], addrs: list[int], writes: list[int]) -> np.ndarray:
    out = empty_trace(len(pcs))
    out["pc"] = np.array(pcs, dtype=np.uint64)
    out["addr"] = np.array(addrs, dtype=np.uint64)
    out["write"] = np.array(writes, dtype=np.uint8)
    return out


def write_csv(path: str | Path, chunks: Iterable[np.ndarray], *, with_kind: bool = False
              ) -> int:
    """Write records as Parrot csv (``0xPC,0xADDRESS`` per line), atomically.

    Parrot's format has no read/write column, so writes are lost unless ``with_kind`` adds a
    third column ``r``/``w`` (which :func:`iter_csv` reads back). Returns the records written.
    """
    path = Path(path)
    directory = output_directory(path, "a csv file")
    fd, tmp = mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            count = write_csv_to(handle, chunks, with_kind=with_kind)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def write_csv_to(handle: TextIO, chunks: Iterable[np.ndarray], *,
                 with_kind: bool = False) -> int:
    """The csv lines of :func:`write_csv` on an open text stream (standard output, say);
    returns the records written."""
    count = 0
    for records in chunks:
        pcs = records["pc"].tolist()
        addrs = records["addr"].tolist()
        if with_kind:
            kinds = np.where(records["write"] != 0, "w", "r").tolist()
            lines = [f"0x{p:x},0x{a:x},{k}\n" for p, a, k in zip(pcs, addrs, kinds, strict=True)]
        else:
            lines = [f"0x{p:x},0x{a:x}\n" for p, a in zip(pcs, addrs, strict=True)]
        handle.write("".join(lines))
        count += len(records)
    return count


# -- statistics -----------------------------------------------------------------------------

def trace_info(path: str | Path, *, line_bytes: int = 64) -> dict[str, int | None]:
    """Counts of a trace file: accesses, reads, writes, unique lines and PCs, bytes on disk
    (``file_bytes`` None for a pipe or device, which has no size)."""
    if line_bytes <= 0 or line_bytes & (line_bytes - 1):
        raise ValueError(f"line_bytes must be a power of two, not {line_bytes}")
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # reading it below says what is wrong with it
        regular = False
    shift = np.uint64(line_bytes.bit_length() - 1)
    accesses = writes = 0
    lines = np.empty(0, dtype=np.uint64)
    pcs = np.empty(0, dtype=np.uint64)
    for records in iter_trace_chunks(path, 1 << 20):
        accesses += len(records)
        writes += int(np.count_nonzero(records["write"]))
        lines = np.union1d(lines, records["addr"] >> shift)
        pcs = np.union1d(pcs, records["pc"])
    return {
        "accesses": accesses,
        "reads": accesses - writes,
        "writes": writes,
        "unique_lines": len(lines),
        "unique_pcs": len(pcs),
        "line_bytes": line_bytes,
        "file_bytes": os.path.getsize(path) if regular else None,
    }


# -- L1 filtering ---------------------------------------------------------------------------

_SIZE_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """``32768``, ``32K``, ``32KiB``, ``2M`` → bytes; ValueError if malformed."""
    token = text.strip().upper().removesuffix("IB").removesuffix("B")
    suffix = token[-1:] if token[-1:] in ("K", "M", "G") else ""
    number = token[: len(token) - len(suffix)]
    if not number.isdigit():
        raise ValueError(text)
    return int(number) * _SIZE_SUFFIX[suffix]


def parse_cache_spec(text: str, *, option: str = "--l1") -> tuple[int, int, int]:
    """``SIZE:WAYS:LINE`` (e.g. ``32K:8:64``) → (size bytes, ways, line bytes), validated."""
    from hwloop.errors import ParameterError

    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError(text)
        size, ways, line = parse_size(parts[0]), int(parts[1]), parse_size(parts[2])
    except ValueError:
        raise ParameterError(f"{option} must be SIZE:WAYS:LINE like 32K:8:64, "
                             f"not {text!r}") from None
    if line <= 0 or line & (line - 1):
        raise ParameterError(f"{option} line size must be a power of two, not {line}")
    for what, value in (("size", size), ("ways", ways)):
        if value <= 0:
            raise ParameterError(f"{option} {what} must be positive, not {value}")
    if size % (ways * line):
        raise ParameterError(f"{option} size {size} is not a multiple of ways x line "
                             f"({ways} x {line})")
    sets = size // (ways * line)
    if sets & (sets - 1):
        raise ParameterError(f"{option} gives {sets} sets, which is not a power of two")
    from hwloop.hdl.cache.params import CacheConfig

    try:  # the model's limits (ways, sets, line size), named as the option's
        CacheConfig(sets=sets, ways=ways, line_bytes=line, addr_bits=64)
    except ParameterError as exc:
        raise ParameterError(f"{option} {exc}") from None
    return size, ways, line


class L1Filter:
    """Passes on the accesses that miss in an LRU cache: an L1-filtered (L2-like) stream.

    It uses the LRU golden model of :mod:`hwloop.sim.cache.model` one block of records at a
    time. Between blocks it keeps the exact LRU state — the ``ways`` most recently used
    distinct lines of every set — and replays it as a warm-up prefix into the next block,
    so filtering in blocks gives exactly the misses of filtering the whole trace at once.
    Writebacks of dirty L1 lines are not added to the stream.
    """

    def __init__(self, *, size: int, ways: int, line_bytes: int):
        from hwloop.sim.cache.model import CacheConfig

        self.size, self.ways, self.line_bytes = size, ways, line_bytes
        self.sets = size // (ways * line_bytes)
        self.config = CacheConfig(sets=self.sets, ways=ways, line_bytes=line_bytes,
                                  addr_bits=64, policy="lru")
        self._shift = np.uint64(line_bytes.bit_length() - 1)
        self._warm = empty_trace()
        self.accesses = 0
        self.misses = 0

    @classmethod
    def from_spec(cls, text: str, *, option: str = "--l1") -> L1Filter:
        size, ways, line = parse_cache_spec(text, option=option)
        return cls(size=size, ways=ways, line_bytes=line)

    @property
    def spec(self) -> str:
        return f"{self.size}:{self.ways}:{self.line_bytes}"

    def __call__(self, records: np.ndarray) -> np.ndarray:
        from hwloop.sim.cache.model import simulate

        if len(records) == 0:
            return records
        warm = len(self._warm)
        combined = np.concatenate((self._warm, as_trace(records)))
        hit = np.asarray(simulate(self.config, combined).hit, dtype=bool)[warm:]
        self._warm = self._lru_state(combined["addr"] >> self._shift)
        self.accesses += len(records)
        missed = records[~hit]
        self.misses += len(missed)
        return missed

    def _lru_state(self, lines: np.ndarray) -> np.ndarray:
        """Records that rebuild the LRU state after ``lines`` in an empty cache."""
        newest_first = lines[::-1]
        distinct, age = np.unique(newest_first, return_index=True)  # age 0 = most recent
        sets = distinct & np.uint64(self.sets - 1)
        order = np.lexsort((age, sets))
        sets, distinct, age = sets[order], distinct[order], age[order]
        group_start = np.flatnonzero(np.r_[True, sets[1:] != sets[:-1]])
        rank = np.arange(len(sets)) - np.repeat(group_start, np.diff(np.r_[group_start,
                                                                           len(sets)]))
        keep = rank < self.ways
        distinct, age = distinct[keep], age[keep]
        oldest_first = np.argsort(-age, kind="stable")
        warm = empty_trace(len(distinct))
        warm["addr"] = distinct[oldest_first] << self._shift
        return warm
