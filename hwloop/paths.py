"""Where hwloop keeps things on disk."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import platformdirs

from hwloop.errors import ConfigError, InputError


def cache_dir() -> Path:
    """The root of hwloop's caches: ``$HWLOOP_CACHE`` or the user's cache directory."""
    root = os.environ.get("HWLOOP_CACHE")
    path = Path(root) if root else Path(platformdirs.user_cache_dir("hwloop"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = f"HWLOOP_CACHE={root}" if root else f"the cache folder {path}"
        reason = "it is not a folder" if isinstance(exc, FileExistsError) \
            else exc.strerror or str(exc)
        raise InputError(f"{where}: cannot use it as hwloop's cache ({reason}); set "
                          "HWLOOP_CACHE to a writable folder") from None
    return path


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
