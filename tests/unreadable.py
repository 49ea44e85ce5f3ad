"""Files a test makes unreadable: root, who runs the tests here, reads past chmod 000."""

from __future__ import annotations

import builtins
import os
from pathlib import Path


def refuse_opening(monkeypatch, path: Path) -> None:
    """``open(path)`` raises PermissionError, as it does for a user on a chmod 000 file."""
    real_open = builtins.open

    def refuse(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refuse)
