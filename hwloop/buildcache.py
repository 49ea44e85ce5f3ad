"""A content-addressed cache of builds (Verilator models, compiled helpers).

A build is keyed by the SHA-256 of everything that can change its output: the source texts,
the tool flags and the tool versions. A finished build lives in ``<cache>/builds/<key>/`` and is
never rebuilt. Builds are made in a private temporary folder and published with an atomic
``rename``, so several processes can build at once and none ever sees half a build; a per-key
file lock (removed when released) keeps them from doing the same costly work twice. The staging
folder of a build that was killed is removed by the next build of its key.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from hwloop.errors import InputError
from hwloop.paths import cache_dir

_COMPLETE = ".complete"


def build_key(
    *,
    sources: Mapping[str, str | bytes],
    flags: Sequence[str] = (),
    tools: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> str:
    """The content hash of a build: source names and texts, flags, tool versions, extras."""
    digest = hashlib.sha256()

    def feed(tag: str, data: bytes) -> None:
        digest.update(tag.encode())
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    for name in sorted(sources):
        text = sources[name]
        feed("src:" + name, text.encode() if isinstance(text, str) else text)
    feed("flags", json.dumps(list(flags)).encode())
    feed("tools", json.dumps(dict(sorted((tools or {}).items()))).encode())
    feed("extra", json.dumps(extra or {}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


class BuildCache:
    """Finished builds by key under ``root`` (default ``$HWLOOP_CACHE/builds``)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "builds"
        with self._writable():
            self.root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _writable(self) -> Iterator[None]:
        """An OSError of making a file or folder in the cache (a read-only file system) as an
        error naming the cache folder."""
        try:
            yield
        except OSError as exc:
            raise InputError(f"{self.root}: cannot use it as hwloop's build cache "
                             f"({exc.strerror or exc}); set HWLOOP_CACHE to a writable "
                             "folder") from None

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / _COMPLETE).exists()

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        """Hold the key's lock file, and remove it when done (one empty file per build would
        otherwise stay in the cache for good). A waiter that was given the lock of a file its
        holder has just removed sees that the path no longer names its file and starts over."""
        lock_path = self.root / f".{key}.lock"
        while True:
            with self._writable():
                handle = open(lock_path, "a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            handle.close()  # closing releases the lock
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)  # while holding it: no one else can own it now
            handle.close()

    def get_or_build(self, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """Return ``(path, built)``: the finished build for ``key``, making it if needed.

        ``build(folder)`` must write the whole build into ``folder`` (which exists and is
        empty). If it raises, nothing is published and the error propagates.
        """
        final = self.path(key)
        if (final / _COMPLETE).exists():
            return final, False
        with self._lock(key):
            if (final / _COMPLETE).exists():  # another process finished while we waited
                return final, False
            self._remove_stale_staging(key)
            staging = self.root / f".staging-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            with self._writable():
                staging.mkdir(parents=True)
            try:
                build(staging)
                (staging / _COMPLETE).write_text(key)
                if final.exists():  # a stale, incomplete folder from a killed process
                    shutil.rmtree(final, ignore_errors=True)
                os.rename(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return final, True

    def _remove_stale_staging(self, key: str) -> None:
        """Remove the staging folders of builds of ``key`` that were killed (``kill -9``, a
        sweep worker's ``--timeout``): the caller holds the key's lock, so no live process
        is building that key and any such folder is an orphan."""
        pattern = re.compile(rf"\.staging-{re.escape(key)}-\d+-[0-9a-f]{{8}}")
        for folder in self.root.glob(f".staging-{glob.escape(key)}-*"):
            if pattern.fullmatch(folder.name):
                shutil.rmtree(folder, ignore_errors=True)
