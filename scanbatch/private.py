"""The data folder is private to the account that runs the server: photos, reviews and the
store's hashed keys are the station's, not every local account's (0700 folders, 0600 files).

A process that writes the data folder claims it once at start (`claim`): its umask then makes
everything it and its children (kernels, warm processes) create private, whichever module
writes the file, and a data folder made readable before (an older version, a hand-made one) is
closed again."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def claim(data_dir: Path) -> None:
    """Make files this process (and what it starts) creates private, and `data_dir` 0700."""
    os.umask(PRIVATE_UMASK)
    private_dir(data_dir)


def private_dir(path: Path) -> Path:
    """`path`, created if missing, readable by this account alone."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """`path` (an existing file) readable by this account alone."""
    os.chmod(path, FILE_MODE)
    return path
