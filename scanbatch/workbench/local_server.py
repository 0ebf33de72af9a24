"""The scanbatch server of this machine, for a workbench opened without one.

`make run` hands the page its server and a token. A workbench opened any other way (JupyterLab,
`voila notebooks/workbench.ipynb`) with neither finds the server that runs on this machine's data
folder through the file the server writes for local commands (`<data dir>/server.json`: its
address and a token for its lifetime, readable by the folder's owner only), and starts one when
none runs. The server it starts runs in a session of its own, so jobs go on when the page
closes; it logs to `<data dir>/server.log`."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from scanbatch import server_file
from scanbatch.client import ApiError, Client
from scanbatch.errors import ScanbatchError
from scanbatch.private import FILE_MODE, private_dir
from scanbatch.settings import REPO_ROOT, Settings

LOG_FILE = "server.log"
START_LOCK = ".server-start.lock"
START_TIMEOUT = 120.0  # seconds; the server answers once a notebook kernel is warm (~4 s idle)


@dataclass(frozen=True)
class LocalServer:
    url: str
    token: str  # the server's local stationManager token: never shown, never saved
    pid: int
    started: bool = False  # started by this call


def running(data_dir: Path) -> LocalServer | None:
    """The server that runs on `data_dir` and answers, if any."""
    found = _recorded(data_dir)
    if found is None:
        return None
    try:
        Client(found.url, found.token, timeout=2).health()
    except ApiError:  # not answering (yet): it answers once its first kernel is warm
        return None
    return LocalServer(found.url, found.token, found.pid)


def _recorded(data_dir: Path) -> server_file.ServerFile | None:
    """The server named by the data dir's server file while its process lives: it may still
    be starting (the file is written before its first kernel is warm and it answers)."""
    found = server_file.read(data_dir)
    if found is None:
        return None
    try:  # a server killed with -9 leaves its file behind, and its pid may be reused
        alive = "scanbatch" in " ".join(psutil.Process(found.pid).cmdline())
    except psutil.Error:
        return None
    return found if alive else None


def ensure(
    settings: Settings,
    *,
    timeout: float = START_TIMEOUT,
    on_start: Callable[[str], None] | None = None,
) -> LocalServer:
    """The running server, or one started now on `settings` (data folder, host, port and
    extractor; the rest from the environment, as `scanbatch serve` reads them). Raises
    ScanbatchError with the end of the server's log when it cannot start."""
    data_dir = settings.data_dir
    found = running(data_dir)
    if found is not None:
        return found
    private_dir(data_dir)
    # One page starts it; pages opened meanwhile wait here, then find it running.
    with open(data_dir / START_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start(settings, data_dir, timeout, on_start)


def _start(
    settings: Settings,
    data_dir: Path,
    timeout: float,
    on_start: Callable[[str], None] | None,
) -> LocalServer:
    found = running(data_dir)
    if found is not None:
        return found
    log = data_dir / LOG_FILE
    if _recorded(data_dir) is not None:  # started some other way, and not answering yet
        return _wait(data_dir, None, log, timeout)
    env = {
        # Not QUERY_STRING: Voilà hands its kernel the page's request, `?token=` included,
        # and the page's key must not outlive the page in a server's environment.
        **{k: v for k, v in os.environ.items() if k != "QUERY_STRING"},
        "SCANBATCH_DATA_DIR": str(data_dir),
        "SCANBATCH_HOST": settings.host,
        "SCANBATCH_PORT": str(settings.port),
        "SCANBATCH_EXTRACTOR": settings.extractor,
    }
    # The server's log is private like the rest of the data folder (the kernel that starts the
    # server may run with a looser umask than the server, which claims the folder itself).
    with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE), "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scanbatch.cli",
                "serve",
                "--no-first-key",
                "--log-file",
                str(log),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if on_start is not None:
        on_start(str(log))
    return _wait(data_dir, proc, log, timeout)


def _wait(data_dir: Path, proc: subprocess.Popen | None, log: Path, timeout: float) -> LocalServer:
    deadline = time.monotonic() + timeout
    while True:
        found = running(data_dir)
        if found is not None:
            return replace(found, started=proc is not None and found.pid == proc.pid)
        if proc is not None and proc.poll() is not None:
            raise ScanbatchError(
                f"Could not start a scanbatch server here (it exited with code "
                f"{proc.returncode}). The end of its log, {log}:\n{_tail(log)}"
            )
        if proc is None and _recorded(data_dir) is None:
            raise ScanbatchError(f"The scanbatch server of this machine stopped; see {log}")
        if time.monotonic() > deadline:
            raise ScanbatchError(
                f"The scanbatch server of this machine did not answer within {timeout:g} s; "
                f"see {log}"
            )
        time.sleep(0.2)


def _tail(path: os.PathLike[str], lines: int = 6) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"
