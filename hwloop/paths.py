"""Where hwloop keeps things on disk."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """The root of hwloop's caches: ``$HWLOOP_CACHE`` or the user's cache directory."""
    root = os.environ.get("HWLOOP_CACHE")
    path = Path(root) if root else Path(platformdirs.user_cache_dir("hwloop"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_created(path: str | Path) -> None:
    """Give ``path``, made owner-only by ``tempfile`` to be renamed into place, the mode a
    plain ``open`` or ``mkdir`` would have: users share what hwloop writes like any file."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())
