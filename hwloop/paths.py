"""Where hwloop keeps things on disk."""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import os
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import platformdirs

from hwloop.errors import ConfigError, InputError

try:
    import fcntl
except ImportError:
    fcntl = None


def cache_dir() -> Path:
    """The root of hwloop's caches: ``$HWLOOP_CACHE`` or the user's cache directory."""
    root = os.environ.get("HWLOOP_CACHE")
    path = Path(root) if root else Path(platformdirs.user_cache_dir("hwloop"))
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):  # an existing folder: mkdir said nothing
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    except OSError as exc:
        where = f"HWLOOP_CACHE={root}" if root else f"the cache folder {path}"
        reason = "it is not a folder" if isinstance(exc, FileExistsError) \
            else exc.strerror or str(exc)
        raise InputError(f"{where}: cannot use it as hwloop's cache ({reason}); set "
                          "HWLOOP_CACHE to a writable folder") from None
    return path


def check_folder_path(path: str | Path, *, name: str, error: type[InputError] = InputError,
                      parents_only: bool = False) -> None:
    """Refuse an output folder the user named (``path``) that cannot be one: the first of it
    and the folders above it that exists must be a folder (one that does not exist yet is
    fine: it is made later). ``name`` is how the user named the path, the message's prefix
    (``--workdir out/w``, ``-o out/report``); ``error`` is the class raised. With
    ``parents_only``, ``path`` names a file to write, and only the folders above it count.

    The messages: ``--log-dir out/x: exists and is a file, not a folder`` (the path itself),
    ``--log-dir out/x: out is a file, not a folder`` (a folder above it); "is not a folder"
    instead for something else (a device, a socket); ``--log-dir out/x: cannot reach it:
    Permission denied`` when a folder above it cannot be searched; ``--log-dir out/x: is a
    symbolic link to nothing (target)`` for a dangling link or a loop."""
    path = Path(path)
    try:
        path.exists()
    except OSError as exc:  # a folder above it cannot be searched (chmod 000): EACCES
        raise error(f"{name}: cannot reach it: {exc.strerror or exc}") from None
    if path.is_symlink() and not path.exists():  # dangling, or a loop: writing it would fail
        raise error(f"{name}: is a symbolic link to nothing ({os.readlink(path)})")
    for folder in (*(() if parents_only else (path,)), *path.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file, not a folder" if folder.is_file() else "is not a folder"
                where = "exists and" if folder == path else str(folder)
                raise error(f"{name}: {where} {what}")
            return


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_cache_file(path: Path, text: str) -> None:
    """Write one of hwloop's own cache files: atomically (a concurrent reader never sees half
    a file) and at best effort (a cache that cannot be written only costs time later)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def mkstemp(*, dir: str | Path, prefix: str, suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp``, but the file gets the mode a plain ``open`` would give it (0o666
    less the umask, not owner-only): it is renamed into place as the user's output. A folder
    the user cannot write in is an input error naming it."""
    try:
        fd, path = tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)
    except OSError as exc:
        raise InputError(f"cannot write in {str(dir)!r}: {exc.strerror or exc}") from None
    try:
        os.chmod(path, 0o666 & ~_umask())
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, path


def mkdtemp(*, dir: str | Path, prefix: str) -> Path:
    """``tempfile.mkdtemp``, but the folder gets the mode a plain ``mkdir`` would give it (0o777
    less the umask, not owner-only): it is renamed into place as the user's output. A folder
    the user cannot write in is an input error naming it."""
    try:
        path = Path(tempfile.mkdtemp(dir=dir, prefix=prefix))
    except OSError as exc:
        raise InputError(f"cannot write in {str(dir)!r}: {exc.strerror or exc}") from None
    try:
        os.chmod(path, 0o777 & ~_umask())
    except BaseException:
        path.rmdir()
        raise
    return path


#: a scratch folder's lock file, held (flock) by the process that works in the folder
_OWNER = ".owner"
#: marks a scratch folder kept for the user (a failed run's log): never reaped
_KEPT = ".kept"
#: a lock file younger than this may belong to a process that has not locked it yet
_REAP_AFTER_S = 60.0
_owned: dict[Path, int] = {}


def scratch_dir(kind: str) -> Path:
    """A new folder ``hwloop-<kind>-*`` in the system's temporary folder for one run's files.

    This process holds a lock in it until :func:`remove_scratch` or :func:`keep_scratch`. A
    process killed before it could remove its folder (a timed-out sweep worker, ``kill -9``)
    cannot clean up, so the first scratch folder each process makes removes the folders whose
    owner is gone: the lock, not the pid, says so (pids are reused, and differ between
    containers that share ``/tmp``)."""
    _reap_orphans()
    path = Path(tempfile.mkdtemp(prefix=f"hwloop-{kind}-"))
    fd = os.open(path / _OWNER, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        _lock(fd)
    except BaseException:
        os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
        raise
    _owned[path] = fd
    return path


def remove_scratch(path: Path) -> None:
    """Remove a folder :func:`scratch_dir` made."""
    fd = _owned.pop(path, None)
    shutil.rmtree(path, ignore_errors=True)
    if fd is not None:
        os.close(fd)


def keep_scratch(path: Path) -> None:
    """Leave a folder :func:`scratch_dir` made for the user (it holds a log an error names)."""
    fd = _owned.pop(path, None)
    with contextlib.suppress(OSError):
        (path / _KEPT).touch()
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def scratch(kind: str, *, keep_on_error: bool = False, keep: bool = False) -> Iterator[Path]:
    """:func:`scratch_dir` for a ``with`` block: removed at its end, or kept if ``keep`` is set
    (it holds waves for the user) or the block raises an ``Exception`` and ``keep_on_error``
    is set (it holds the log the error names)."""
    path = scratch_dir(kind)
    try:
        yield path
    except Exception:
        (keep_scratch if keep_on_error else remove_scratch)(path)
        raise
    except BaseException:
        remove_scratch(path)
        raise
    (keep_scratch if keep else remove_scratch)(path)


#: byte-range lock files this process holds a lock in: closing any descriptor of a file drops
#: all of the process's POSIX locks on it, so each stays open until its last lock is released
_range_files: dict[Path, int] = {}
_range_held: set[tuple[Path, int]] = set()
#: Linux's ``struct flock`` (64-bit ``off_t``), for asking who holds a byte
_FLOCK = struct.Struct("hhqqi4x")


def try_lock_byte(path: Path, byte: int) -> Callable[[], None] | None:
    """Take the lock on byte ``byte`` of the file ``path`` (made if missing) for this process,
    without waiting: a function that releases it (so does the process's end, even by
    ``kill -9``), or None while another process, or this one, holds it. A POSIX byte-range
    lock: one file serves many locks."""
    if fcntl is None:  # no POSIX locks (Windows): nothing to hold
        return lambda: None
    key = Path(os.path.abspath(path))
    if (key, byte) in _range_held:
        return None
    fd = _range_files.get(key)
    if fd is None:
        try:
            fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InputError(f"{path}: cannot open the lock file: {exc.strerror or exc}") \
                from None
        _range_files[key] = fd
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
    except OSError as exc:
        if not any(held == key for held, _ in _range_held):
            os.close(_range_files.pop(key))
        if exc.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        return None
    _range_held.add((key, byte))

    def release() -> None:
        _range_held.discard((key, byte))
        if any(held == key for held, _ in _range_held):
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, byte)
        else:  # the last lock on the file: closing drops it
            os.close(_range_files.pop(key))

    return release


def byte_lock_holder(path: Path, byte: int) -> int | None:
    """The pid of the process that holds byte ``byte`` of ``path`` (:func:`try_lock_byte`),
    or None if it is free or the system cannot say (not Linux, a pid in another container)."""
    key = Path(os.path.abspath(path))
    if (key, byte) in _range_held:
        return os.getpid()
    if fcntl is None or sys.platform != "linux" or sys.maxsize <= 2**32:
        return None
    fd = _range_files.get(key)
    try:
        probe = fd if fd is not None else os.open(key, os.O_RDWR)
    except OSError:
        return None
    try:
        query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0)
        kind, _, _, _, pid = _FLOCK.unpack(fcntl.fcntl(probe, fcntl.F_GETLK, query))
    except OSError:
        return None
    finally:
        if fd is None:
            os.close(probe)
    return pid if kind != fcntl.F_UNLCK and pid > 0 else None


def _lock(fd: int) -> bool:
    """Take the lock on ``fd`` without waiting; False if another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def staging_dir(parent: Path, name: str) -> tuple[Path, Callable[[], None]]:
    """A hidden folder ``.<name>.tmp-*`` in ``parent`` to build the output ``name`` in before it
    is renamed into place, and a function that releases it. This process holds a lock on a
    sibling ``.lock`` file meanwhile; staging folders of ``name`` whose lock nobody holds (their
    process was killed mid-write) are removed first, once they are a minute old."""
    now = time.time()
    # (without flock nothing says a staging folder's process is gone: none is removed)
    for stale in parent.glob(f".{glob.escape(name)}.tmp-*") if fcntl is not None else ():
        lock = Path(f"{stale}.lock")
        if stale.suffix == ".lock" or not stale.is_dir():
            continue
        try:
            if now - stale.stat().st_mtime < _REAP_AFTER_S:
                continue
            fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o600)
        except OSError:  # another process reaped it, or the folder cannot be written
            continue
        try:
            if _lock(fd):
                shutil.rmtree(stale, ignore_errors=True)
                lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    path = mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    lock = Path(f"{path}.lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
    _lock(fd)  # a new file: nobody else holds it

    def release() -> None:
        lock.unlink(missing_ok=True)
        os.close(fd)
    return path, release


@functools.cache
def _reap_orphans() -> None:
    """Remove scratch folders whose process is gone (once per process, at best effort)."""
    if fcntl is None:  # no flock (Windows): nothing says an owner is gone
        return
    now = time.time()
    for folder in Path(tempfile.gettempdir()).glob("hwloop-*"):
        owner = folder / _OWNER
        try:
            if (folder / _KEPT).exists() or now - owner.stat().st_mtime < _REAP_AFTER_S:
                continue
            fd = os.open(owner, os.O_RDONLY)
        except OSError:  # not a scratch folder, or another process reaped it
            continue
        try:
            if _lock(fd):
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


def read_user_text(path: str | Path, *, error: type[InputError] = ConfigError,
                   what: str = "") -> str:
    """A file the user wrote (CSV, TOML), as UTF-8 text. An unreadable file or one that is
    not UTF-8 raises ``error`` naming the file (and the line of the first bad byte).
    ``what``: how the message calls the file ("space file"), after "cannot read"."""
    label = f" {what}" if what else ""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read{label}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is dropped
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
