"""Table files: the contents of a table-driven replacement policy or delta prefetcher.

A table file is a NumPy ``.npz`` archive (read with ``allow_pickle=False``) holding:

- ``meta``: a 0-d text array with JSON ``{"format": "hwloop-table", "version": 1, "kind":
  "replacement"|"prefetch", "entries": E, "entry_bits": k, "history": H}``
- ``values``: E integers. Replacement: unsigned k-bit entries (insertion priority, see
  docs/caches.md). Prefetch: signed k-bit line deltas (0 = no prediction).
- ``confidence`` (prefetch only): E unsigned 2-bit confidences.

The table carries its geometry, so a table made for another geometry or use is rejected with a
one-line error naming the file.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwloop.errors import ConfigError
from hwloop.paths import mkstemp

FORMAT = "hwloop-table"
KINDS = ("replacement", "prefetch")
#: Bits of the confidence counter of a prefetch table entry.
CONFIDENCE_BITS = 2


@dataclass(frozen=True, kw_only=True, eq=False)
class Table:
    """A loaded, validated table. ``entries`` is a power of two; the index hashes the PC."""

    kind: str
    entries: int
    entry_bits: int
    history: int
    values: np.ndarray
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def index_bits(self) -> int:
        return self.entries.bit_length() - 1

    def geometry(self) -> str:
        return (f"{self.kind} table of {self.entries} entries x {self.entry_bits} bits, "
                f"history {self.history}")


def _entry_range(kind: str, bits: int) -> tuple[int, int]:
    if kind == "replacement":
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


#: The most entries a table holds.
MAX_ENTRIES = 1 << 16


def check_geometry(kind: str, entries: int, entry_bits: int, history: int) -> str | None:
    """Why this geometry is illegal, or None."""
    if kind not in KINDS:
        return f"kind must be one of {', '.join(KINDS)}, not {kind!r}"
    if not isinstance(entries, int) or entries < 1 or entries > MAX_ENTRIES \
            or entries & (entries - 1):
        return f"entries must be a power of two in 1..{MAX_ENTRIES}, not {entries!r}"
    lo_bits = 3 if kind == "replacement" else 2
    if not isinstance(entry_bits, int) or not lo_bits <= entry_bits <= 16:
        return f"entry_bits must be an integer in {lo_bits}..16, not {entry_bits!r}"
    if not isinstance(history, int) or not 0 <= history <= 4:
        return f"history must be an integer in 0..4, not {history!r}"
    return None


def make_table(*, kind: str, entry_bits: int, history: int, values: np.ndarray,
               confidence: np.ndarray | None = None) -> Table:
    """A table from arrays (validated; raises ValueError on bad contents)."""
    values = np.asarray(values, dtype=np.int64).ravel()
    problem = check_geometry(kind, int(values.size), entry_bits, history)
    if problem:
        raise ValueError(problem)
    lo, hi = _entry_range(kind, entry_bits)
    if values.size and (values.min() < lo or values.max() > hi):
        raise ValueError(f"values must be in {lo}..{hi} for {entry_bits}-bit {kind} entries")
    if kind == "prefetch":
        if confidence is None:
            raise ValueError("a prefetch table needs a confidence array")
        confidence = np.asarray(confidence, dtype=np.int64).ravel()
        if confidence.size != values.size:
            raise ValueError(f"confidence has {confidence.size} entries, values {values.size}")
        if confidence.size and (confidence.min() < 0
                                or confidence.max() >= 1 << CONFIDENCE_BITS):
            raise ValueError(f"confidence must be in 0..{(1 << CONFIDENCE_BITS) - 1}")
    else:
        confidence = np.zeros(0, np.int64)
    return Table(kind=kind, entries=int(values.size), entry_bits=entry_bits, history=history,
                 values=values, confidence=confidence)


def save_table(path: str | Path, table: Table) -> None:
    """Write ``table`` to ``path`` (.npz) atomically."""
    path = Path(path)
    meta = {"format": FORMAT, "version": 1, "kind": table.kind, "entries": table.entries,
            "entry_bits": table.entry_bits, "history": table.history}
    arrays = {"meta": np.array(json.dumps(meta)), "values": table.values.astype(np.int64)}
    if table.kind == "prefetch":
        arrays["confidence"] = table.confidence.astype(np.int64)
    fd, tmp = mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _array(path: Path, archive: np.lib.npyio.NpzFile, name: str) -> np.ndarray:
    """The array ``name`` of a table file, which holds only plain (not object) arrays."""
    try:
        array = archive[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # an object array: only unpickling would read it
            raise ConfigError.at(path, None, f"'{name}' is an array of Python objects; "
                                 f"a table file holds numbers and text") from exc
        raise
    if not isinstance(array, np.ndarray):  # a zip member that is not an .npy
        raise ConfigError.at(path, None, f"'{name}' is not a NumPy array")
    return array


# an array's .npy member: its entries at 8 bytes, plus the .npy header; meta is a short text
_MAX_MEMBER_BYTES = MAX_ENTRIES * 8 + 4096


def _check_sizes(path: Path) -> None:
    """Reject an archive whose members would unpack past what a table can hold, before any is
    unpacked (a small .npz can hold gigabytes of zeros)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.file_size > _MAX_MEMBER_BYTES:
                raise ConfigError.at(path, None, f"'{name}' unpacks to {info.file_size} bytes; "
                                     f"a table has at most {MAX_ENTRIES} entries")
            if name in ("values", "confidence"):
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape = read(member)[0]
                if int(np.prod(shape)) > MAX_ENTRIES:
                    raise ConfigError.at(path, None, f"'{name}' has shape {shape}; a table "
                                         f"has at most {MAX_ENTRIES} entries")


def load_table(path: str | Path, *, kind: str, entries: int | None = None,
               entry_bits: int | None = None, history: int | None = None) -> Table:
    """Load and validate a table file; the geometry arguments, when given, must match."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            regular = stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
    except FileNotFoundError as exc:
        raise ConfigError.at(path, None, "no such table file") from exc
    except OSError as exc:
        raise ConfigError.at(path, None, f"cannot read table file: {exc.strerror}") from exc
    if not regular:  # a pipe (<(...)): a zip is read by seeking, and a table more than once
        raise ConfigError.at(path, None, "is not a regular file (a pipe?); name the table "
                                         "file itself")
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):
        # np.load would take anything but a zip (an .npz) for a pickle and suggest unpickling it
        raise ConfigError.at(path, None, "not a table file (not an .npz archive)")
    try:
        _check_sizes(path)
        with np.load(path, allow_pickle=False) as archive:
            if "meta" not in archive or "values" not in archive:
                raise ConfigError.at(path, None, "not an hwloop table (needs 'meta' and 'values')")
            meta_text = _array(path, archive, "meta")[()]
            values = _array(path, archive, "values")
            confidence = _array(path, archive, "confidence") if "confidence" in archive else None
        meta = json.loads(str(meta_text))
    except ConfigError:
        raise
    except json.JSONDecodeError as exc:
        raise ConfigError.at(path, None, "not an hwloop table ('meta' is not JSON)") from exc
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError,
            RuntimeError, NotImplementedError) as exc:  # zipfile: encrypted, unknown method
        raise ConfigError.at(path, None, f"not a readable table file ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError.at(path, None, "not an hwloop table (bad 'meta')")
    if meta.get("kind") != kind:
        raise ConfigError.at(path, None, f"is a {meta.get('kind')} table, need a {kind} table")
    for name in ("entries", "entry_bits", "history"):  # else compared or shown as None/'4'
        if name not in meta:
            raise ConfigError.at(path, None, f"meta has no {name!r}")
        if isinstance(meta[name], bool) or not isinstance(meta[name], int):
            raise ConfigError.at(path, None, f"meta {name!r} must be an integer, not "
                                 f"{meta[name]!r}")
    for name, array in (("values", values), ("confidence", confidence)):
        if array is None:
            continue
        if array.dtype.kind not in "iu":
            raise ConfigError.at(path, None, f"{name} must be integers, not {array.dtype}")
        if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
            # make_table's int64 would wrap it (2**64 - 1 -> -1, a legal delta)
            raise ConfigError.at(path, None, f"{name} has {int(array.max())}, out of range")
        if array.ndim != 1 or array.size != meta.get("entries"):
            raise ConfigError.at(path, None, f"meta says {meta.get('entries')} entries but "
                                 f"{name} has shape {array.shape}")
    try:
        table = make_table(kind=kind, entry_bits=meta.get("entry_bits"),
                           history=meta.get("history"), values=values, confidence=confidence)
    except ValueError as exc:
        raise ConfigError.at(path, None, str(exc)) from exc
    wanted = {"entries": entries, "entry_bits": entry_bits, "history": history}
    for name, value in wanted.items():
        if value is not None and getattr(table, name) != value:
            raise ConfigError.at(path, None, f"{table.geometry()}; this design needs "
                                 f"{name}={value}")
    return table


def table_index(table: Table, pcs: list[int]) -> int:
    """The entry index for the current PC ``pcs[0]`` and the previous ones ``pcs[1:]``.

    fold(x): XOR of the ``index_bits``-bit chunks of ``x >> 2`` (64 bits). The index is
    fold(pc) XOR rotl(fold(pc_-1), 1) XOR ... XOR rotl(fold(pc_-H), H), rotations within
    ``index_bits`` bits. (Reference implementation; the C model and the RTL do the same.)
    """
    n = table.index_bits
    if n == 0:
        return 0
    mask = (1 << n) - 1

    def fold(x: int) -> int:
        x = (x & ((1 << 64) - 1)) >> 2
        out = 0
        while x:
            out ^= x & mask
            x >>= n
        return out

    index = 0
    for j, pc in enumerate(pcs[: table.history + 1]):
        f = fold(pc)
        r = j % n
        index ^= ((f << r) | (f >> (n - r))) & mask if r else f
    return index
