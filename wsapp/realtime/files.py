"""Private files: what wsapp writes to disk (the token secret, the SQLite store with every
user's personal messages) is readable by the server's own user only.

Created that way (a mode given to mkdir / os.open, never a chmod after the fact, so there is
no moment at which another user can open the file), and tightened at start when an older
version or a loose umask left them group- or world-readable.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def _tighten(path: Path, mode: int) -> None:
    """Drop every group and other permission bit of `path` (when it has any)."""
    current = stat.S_IMODE(path.stat().st_mode)
    if current & 0o077:
        path.chmod(current & mode)


def private_dir(path: str | Path) -> Path:
    """`path` as a directory only its owner can enter: made 0700 if missing (parents too),
    its group and other bits dropped if present."""
    folder = Path(path)
    folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(folder, DIR_MODE)
    return folder


def private_file(path: str | Path) -> Path:
    """`path` as a file only its owner can read or write: made 0600 if missing, its group
    and other bits dropped if present."""
    file = Path(path)
    os.close(os.open(file, os.O_CREAT | os.O_RDWR, FILE_MODE))
    _tighten(file, FILE_MODE)
    return file


def tighten_existing(*paths: str | Path) -> None:
    """Drop group and other bits of those of `paths` that exist (SQLite's -wal and -shm files
    take the database's mode when made, but one left by an older run keeps its own)."""
    for path in map(Path, paths):
        if path.exists():
            _tighten(path, FILE_MODE)
