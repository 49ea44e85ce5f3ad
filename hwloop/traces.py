"""Memory traces: the ``.trace`` file format, its reader and writer, and text formats.

A trace is a sequence of data accesses, each a record of :data:`TRACE_DTYPE`: the program
counter of the instruction that made it, the byte address and whether it was a write.

File format (version 1, all integers little-endian)::

    header   magic b"HWLTRACE" | u16 version | u16 flags (0) | u32 chunk records | u64 count
    chunk*   u32 records n | u32 payload bytes | u32 CRC-32 of the uncompressed payload
             | zlib(payload)
    footer   b"HWLTEND\\0" | u64 count

A payload holds the n PCs and then the n addresses, each as wrapping 64-bit deltas from the
previous record of the chunk (the first from 0), byte-shuffled (all low bytes, then all next
bytes, ...) so that zlib sees long runs of zeros, then the n write flags as packed bits. Chunks
are independent, so a trace is read in bounded memory (:func:`iter_trace_chunks`). The count in
header and footer, the chunk CRCs and the footer's position detect truncated and corrupt files.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np

from hwloop.errors import TraceError

TRACE_DTYPE = np.dtype([("pc", "<u8"), ("addr", "<u8"), ("write", "u1")])

MAGIC = b"HWLTRACE"
FOOTER_MAGIC = b"HWLTEND\0"
VERSION = 1
CHUNK_RECORDS = 1 << 16

_HEADER = struct.Struct("<8sHHIQ")
_CHUNK = struct.Struct("<III")
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

def _shuffled_deltas(values: np.ndarray) -> bytes:
    deltas = np.empty_like(values)
    deltas[0] = values[0]
    np.subtract(values[1:], values[:-1], out=deltas[1:])  # wraps modulo 2**64
    return deltas.view(np.uint8).reshape(-1, 8).T.tobytes()


def _unshuffled_cumsum(data: bytes, n: int) -> np.ndarray:
    deltas = np.frombuffer(data, dtype=np.uint8).reshape(8, n).T.copy().view("<u8").ravel()
    return np.cumsum(deltas, dtype=np.uint64)


def _encode_chunk(records: np.ndarray) -> bytes:
    n = len(records)
    payload = b"".join((
        _shuffled_deltas(records["pc"].astype("<u8", copy=False)),
        _shuffled_deltas(records["addr"].astype("<u8", copy=False)),
        np.packbits(records["write"] != 0).tobytes(),
    ))
    body = zlib.compress(payload, _ZLIB_LEVEL)
    return _CHUNK.pack(n, len(body), zlib.crc32(payload)) + body


def _decode_payload(payload: bytes, n: int) -> np.ndarray | None:
    """Decode one chunk payload, or None if its length does not fit ``n`` records."""
    flag_bytes = (n + 7) // 8
    if len(payload) != 16 * n + flag_bytes:
        return None
    out = empty_trace(n)
    out["pc"] = _unshuffled_cumsum(payload[: 8 * n], n)
    out["addr"] = _unshuffled_cumsum(payload[8 * n: 16 * n], n)
    flags = np.frombuffer(payload[16 * n:], dtype=np.uint8)
    out["write"] = np.unpackbits(flags, count=n)
    return out


# -- writing --------------------------------------------------------------------------------

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
        directory = self.path.parent if str(self.path.parent) else Path(".")
        if not directory.is_dir():
            raise TraceError(f"{self.path}: directory {directory} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        self._tmp = Path(tmp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._file.write(_HEADER.pack(MAGIC, VERSION, 0, chunk_records, 0))

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
    return handle.read(size)


def read_header(path: str | Path) -> int:
    """The number of accesses a trace file says it holds (checks magic and version only)."""
    with _open(path) as handle:
        return _check_header(path, handle)


def _open(path: str | Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, not a trace file") from None
    except PermissionError:
        raise TraceError(f"{path}: permission denied") from None


def _check_header(path: str | Path, handle: BinaryIO) -> int:
    head = _read_exact(handle, _HEADER.size)
    if len(head) < len(MAGIC) or head[: len(MAGIC)] != MAGIC:
        raise TraceError(f"{path}: not an hwloop trace (bad magic)")
    if len(head) < _HEADER.size:
        raise TraceError(f"{path}: truncated: header is {len(head)} of {_HEADER.size} bytes")
    _, version, _flags, _chunk, count = _HEADER.unpack(head)
    if version != VERSION:
        raise TraceError(f"{path}: unsupported trace version {version} "
                         f"(this hwloop reads version {VERSION})")
    return int(count)


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
        count = _check_header(path, handle)
        seen = 0
        index = 0
        while True:
            offset = handle.tell()
            if seen == count:
                _check_footer(path, handle, count)
                return
            head = _read_exact(handle, _CHUNK.size)
            if len(head) < _CHUNK.size:
                raise TraceError(f"{path}: truncated: header promises {count} accesses, "
                                 f"file ends after {seen}")
            n, size, crc = _CHUNK.unpack(head)
            if n == 0 or seen + n > count:
                raise TraceError(f"{path}: corrupt: chunk {index} at byte {offset} claims {n} "
                                 f"accesses ({seen} of {count} read before it)")
            body = _read_exact(handle, size)
            if len(body) < size:
                raise TraceError(f"{path}: truncated: header promises {count} accesses, "
                                 f"file ends after {seen}")
            try:
                payload = zlib.decompress(body)
            except zlib.error:
                payload = b""
                decoded = None
            else:
                decoded = _decode_payload(payload, n) if zlib.crc32(payload) == crc else None
            if decoded is None:
                raise TraceError(f"{path}: corrupt: chunk {index} at byte {offset} fails "
                                 f"its checksum")
            seen += n
            index += 1
            yield decoded


def _check_footer(path: str | Path, handle: BinaryIO, count: int) -> None:
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
        raise TraceError(f"{path}: corrupt: data after the footer at byte {handle.tell() - 1}")


def read_trace(path: str | Path) -> np.ndarray:
    """The whole trace at ``path`` as one array of :data:`TRACE_DTYPE`."""
    parts = list(_iter_stored_chunks(path))
    if not parts:
        return empty_trace()
    return np.concatenate(parts)
