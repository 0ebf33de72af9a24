"""`<data dir>/server.json`: where a running server tells local processes (the CLI, a workbench
opened without a token) its address, its pid and a stationManager token valid for its lifetime.
Only the data dir's owner can read it; the store is locked while the server runs, so this is
how those processes reach it instead."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from scanbatch.diskspace import disk_full_guard

NAME = "server.json"
# Whom the file's token acts as (scanbatch.web.auth.LOCAL_ADMIN): what reviews saved with it say.


@dataclass(frozen=True)
class ServerFile:
    url: str
    pid: int
    token: str


def path(data_dir: Path) -> Path:
    return data_dir / NAME


def write(data_dir: Path, url: str, token: str) -> Path:
    """Written whole (a private file renamed into place), for this process; on a full disk,
    `DiskFull` and no partial file."""
    target = path(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with disk_full_guard(data_dir, cleanup=lambda: tmp.unlink(missing_ok=True)):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"url": url, "pid": os.getpid(), "token": token}, fh)
        os.replace(tmp, target)
    return target


def read(data_dir: Path) -> ServerFile | None:
    """What the last server on this data dir wrote; None when there is no readable file (it
    may be stale: a server killed with -9 leaves it behind)."""
    try:
        info = json.loads(path(data_dir).read_text())
        return ServerFile(str(info["url"]), int(info["pid"]), str(info["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
