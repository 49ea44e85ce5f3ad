"""Where hwloop keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """The root of hwloop's caches: ``$HWLOOP_CACHE`` or the user's cache directory."""
    root = os.environ.get("HWLOOP_CACHE")
    path = Path(root) if root else Path(platformdirs.user_cache_dir("hwloop"))
    path.mkdir(parents=True, exist_ok=True)
    return path
