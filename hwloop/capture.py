"""Capture the memory trace of a real program with valgrind's lackey tool.

The program runs under ``valgrind --tool=lackey --trace-mem=yes``. Lackey writes its trace to
a pipe (``--log-fd``), never to a text file on disk; the text is parsed block by block while
the program runs (:class:`hwloop.traces.LackeyParser`), optionally filtered through an L1 model
(:class:`hwloop.traces.L1Filter`) and written to a ``.trace`` file that appears only when the
capture succeeded. When ``max_accesses`` records are written the program is killed. Memory
stays bounded by the block sizes, however long the program runs.

Start-up: the dynamic loader and libc initialisation make up most of a small program's
accesses. ``skip="main"`` (the default when the program has a ``main`` symbol) drops every
access before the first instruction of ``main``; ``skip="entry"`` drops those before the ELF
entry point (the dynamic loader only; for stripped programs); an integer drops that many data
accesses (after ``main``/entry when given as ``"main+N"``/``"entry+N"``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hwloop.errors import InputError, ParameterError, ToolchainError, TraceError
from hwloop.manifest import same_file
from hwloop.traces import L1Filter, LackeyParser, TraceWriter, empty_trace

# Where valgrind maps a position-independent executable on amd64 (valgrind's ELF loader).
PIE_LOAD_BASE = 0x108000
READ_BLOCK = 1 << 17          # bytes of lackey text parsed at a time (small: cache-friendly)
PIPE_BYTES = 1 << 20          # pipe buffer, so valgrind rarely waits for the parser
FILTER_BLOCK = 1 << 18        # raw accesses filtered through the L1 model at a time
STDERR_FD = 2                 # the process's stderr (sys.stderr may be no file)


@dataclass
class CaptureStats:
    """What a capture did."""

    program: str
    output: str
    records: int            # accesses written to the trace
    data_accesses: int      # data accesses lackey reported (incl. skipped ones)
    instructions: int       # instructions lackey reported
    before_start: int       # data accesses before the start address (main / entry)
    skipped: int            # data accesses then dropped by a --skip count
    l1: str | None          # the L1 filter's SIZE:WAYS:LINE, if any
    l1_misses: int          # raw accesses that missed in L1 (the filtered stream, untruncated)
    l1_accesses: int        # raw accesses that went through the L1 filter
    start_pc: int | None    # the instruction address capture waited for (main / entry)
    stopped_early: bool     # the program was killed because max_accesses was reached
    exit_status: int | None  # the program's exit status (None if killed by us)
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def find_valgrind() -> str:
    valgrind = shutil.which("valgrind")
    if not valgrind:
        raise ToolchainError("valgrind not found; install it (apt-get install valgrind)")
    return valgrind


def resolve_program(program: str) -> str:
    """The path of ``program`` (a path, or a name on PATH); InputError if there is none."""
    if os.sep in program:
        path = Path(program)
        if not path.is_file():
            raise InputError(f"program not found: {program}")
        if not os.access(path, os.X_OK):
            raise InputError(f"program is not executable: {program}")
        return str(path.resolve())
    found = shutil.which(program)
    if not found:
        raise InputError(f"program not found: {program}")
    return found


# -- ELF: where main and the entry point are under valgrind ---------------------------------

@dataclass(frozen=True)
class ElfStart:
    entry: int          # the entry point's address as valgrind runs the program
    main: int | None    # main's address, if the program has a symbol table with main


def elf_start(path: str | Path) -> ElfStart | None:
    """Entry point and ``main`` of a 64-bit little-endian ELF executable as loaded by
    valgrind (PIEs at :data:`PIE_LOAD_BASE`); None if ``path`` is not such a file. An
    ELF file shorter than its header is an InputError: nothing can run it."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if data[:4] == b"\x7fELF" and len(data) < (52 if data[4:5] == b"\x01" else 64):
        raise InputError(f"{path}: truncated ELF file ({len(data)} bytes, shorter than its "
                         "header)")
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    e_type, _machine, _version, entry = struct.unpack_from("<HHIQ", data, 16)
    if e_type == 2:        # ET_EXEC: linked at its final address
        bias = 0
    elif e_type == 3:      # ET_DYN: a PIE
        bias = PIE_LOAD_BASE
    else:
        return None
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    main = None
    try:
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                    for i in range(shnum)]
        for section in sections:
            if section[1] != 2:  # SHT_SYMTAB
                continue
            strtab = sections[section[6]]
            str_off = strtab[4]
            offset, size, entsize = section[4], section[5], section[9] or 24
            for sym in range(offset, offset + size, entsize):
                name_off, info, _other, shndx, value, _size = struct.unpack_from(
                    "<IBBHQQ", data, sym)
                if info & 0xF != 2 or shndx == 0:  # STT_FUNC, defined
                    continue
                end = data.index(b"\0", str_off + name_off)
                if data[str_off + name_off: end] == b"main":
                    main = value + bias
                    break
    except (struct.error, IndexError, ValueError):
        main = None
    return ElfStart(entry=entry + bias, main=main)


def parse_skip(text: str) -> tuple[str | None, int]:
    """``auto``, ``main``, ``entry``, ``N``, ``main+N``, ``entry+N`` → (anchor, count)."""
    anchor, plus, count = text.partition("+")
    if anchor.isdigit() and not plus:
        return None, int(anchor)
    if anchor not in ("auto", "main", "entry") or (
            plus and (anchor == "auto" or not count.isdigit())):
        raise ParameterError(f"--skip must be auto, main, entry, N, main+N or entry+N, "
                             f"not {text!r}")
    return anchor, int(count or 0)


def start_address(program: str, anchor: str | None) -> int | None:
    """The instruction address capture waits for, for ``anchor`` (None: start at once)."""
    if anchor is None:
        return None
    start = elf_start(program)
    if anchor == "auto":
        if start is None:
            return None
        return start.main if start.main is not None else start.entry
    if start is None:
        raise InputError(f"--skip {anchor}: {program} is not a 64-bit ELF executable")
    if anchor == "main":
        if start.main is None:
            raise InputError(f"--skip main: {program} has no 'main' symbol (stripped?); "
                             f"use --skip entry")
        return start.main
    return start.entry


# -- capture --------------------------------------------------------------------------------

def capture(program: str, args: list[str], output: str | Path, *, skip: str = "auto",
            max_accesses: int | None = None, l1: L1Filter | None = None,
            show_output: bool = False, output_to_stderr: bool = False,
            read_block: int = READ_BLOCK, filter_block: int = FILTER_BLOCK) -> CaptureStats:
    """Run ``program args`` under lackey and write its (filtered) data accesses to ``output``.

    ``show_output`` lets the program's stdout and stderr through (else they are discarded);
    ``output_to_stderr`` sends both to our stderr, so that our stdout holds only our report
    (``--json``).

    Raises InputError if the program does not exist, ToolchainError if valgrind is missing,
    TraceError if nothing was captured. ``output`` is written only on success.
    """
    if max_accesses is not None and max_accesses <= 0:
        raise ParameterError(f"--max must be a positive number of accesses, not {max_accesses}")
    anchor, skip_count = parse_skip(skip)
    valgrind = find_valgrind()
    path = resolve_program(program)
    if same_file(output, path):  # the trace is renamed onto it: the program would be lost
        raise InputError(f"{output}: is the program being traced; name another trace file "
                         f"to write")
    start_pc = start_address(path, anchor)
    parser = LackeyParser(source=f"lackey output of {program}", start_pc=start_pc,
                          skip=skip_count, limit=None if l1 else max_accesses)
    began = time.monotonic()
    writer = TraceWriter(output)
    read_fd, write_fd = os.pipe()
    try:
        fcntl.fcntl(read_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:  # above /proc/sys/fs/pipe-max-size: keep the default
        pass
    stderr_log = tempfile.TemporaryFile()
    command = [valgrind, "--tool=lackey", "--trace-mem=yes", f"--log-fd={write_fd}",
               path, *args]
    try:
        proc = subprocess.Popen(
            command, pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
            stdout=(subprocess.DEVNULL if not show_output
                    else STDERR_FD if output_to_stderr else None),
            stderr=None if show_output else stderr_log, start_new_session=True)
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        writer.abort()
        stderr_log.close()
        raise
    os.close(write_fd)
    stopped = False
    pending: list[np.ndarray] = []
    pending_count = 0

    def emit(records: np.ndarray) -> bool:
        """Write records (through the filter); True once max_accesses is reached."""
        if l1 is not None:
            records = l1(records)
        if max_accesses is not None:
            records = records[: max_accesses - writer.records]
        writer.append(records)
        return max_accesses is not None and writer.records >= max_accesses

    try:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while not stopped:
                data = pipe.read(read_block)
                if not data:
                    break
                records = parser.feed(data)
                if l1 is None:
                    stopped = emit(records) or parser.done
                    continue
                if len(records):
                    pending.append(records)
                    pending_count += len(records)
                if pending_count >= filter_block:
                    stopped = emit(np.concatenate(pending))
                    pending, pending_count = [], 0
            if not stopped:
                tail = parser.finish()
                if l1 is None:
                    emit(tail)
                else:
                    pending.append(tail)
                    emit(np.concatenate(pending) if pending else empty_trace())
        if stopped and proc.poll() is None:
            _kill(proc)
            exit_status = None
        else:
            exit_status = proc.wait()
        if writer.records == 0:
            raise TraceError(_nothing_captured(program, parser, start_pc, exit_status,
                                               stderr_log))
        writer.close()
    except BaseException:
        writer.abort()
        if proc.poll() is None:
            _kill(proc)
        raise
    finally:
        stderr_log.close()
    return CaptureStats(
        program=program, output=str(output), records=writer.count,
        data_accesses=parser.data_accesses, instructions=parser.instructions,
        before_start=parser.before_start, skipped=parser.skipped,
        l1=l1.spec if l1 else None, l1_misses=l1.misses if l1 else 0,
        l1_accesses=l1.accesses if l1 else 0, start_pc=start_pc, stopped_early=stopped,
        exit_status=exit_status, seconds=time.monotonic() - began)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the valgrind process we started (its own session/process group) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _nothing_captured(program: str, parser: LackeyParser, start_pc: int | None,
                      exit_status: int | None, stderr_log: tempfile._TemporaryFileWrapper[bytes]
                      ) -> str:
    if parser.instructions == 0:
        stderr_log.seek(0)
        lines = stderr_log.read().decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {exit_status}"
        return f"valgrind produced no trace for {program}: {reason}"
    if not parser.started and start_pc is not None:
        return (f"{program} never reached its start address 0x{start_pc:x} "
                f"(exit status {exit_status}); try --skip 0")
    return f"captured no accesses from {program} (exit status {exit_status})"
