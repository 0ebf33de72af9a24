"""The scanbatch server of this machine, for a workbench opened without one.

`make run` hands the page its server and a token. A workbench opened any other way (JupyterLab,
`voila notebooks/workbench.ipynb`) with neither finds the server that runs on this machine's data
folder through the file the server writes for local commands (`<data dir>/server.json`: its
address and a token for its lifetime, readable by the folder's owner only), and starts one when
none runs. The server it starts runs in a session of its own, so jobs go on when the page
closes; it logs to `<data dir>/server.log`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import psutil
import requests

from scanbatch import server_file
from scanbatch.errors import ScanbatchError
from scanbatch.settings import REPO_ROOT, Settings

LOG_FILE = "server.log"
START_TIMEOUT = 120.0  # seconds; the server answers once a notebook kernel is warm (~4 s idle)


@dataclass(frozen=True)
class LocalServer:
    url: str
    token: str  # the server's local stationManager token: never shown, never saved
    pid: int
    started: bool = False  # started by this call


def running(settings: Settings) -> LocalServer | None:
    """The server that runs on `settings.data_dir` and answers, if any."""
    found = server_file.read(settings)
    if found is None or not psutil.pid_exists(found.pid):  # a file left by a killed server
        return None
    try:
        if requests.get(f"{found.url}/healthz", timeout=2).status_code != 200:
            return None
    except requests.RequestException:
        return None
    return LocalServer(found.url, found.token, found.pid)


def ensure(
    settings: Settings,
    *,
    timeout: float = START_TIMEOUT,
    on_start: Callable[[str], None] | None = None,
) -> LocalServer:
    """The running server, or one started now on `settings` (data folder, host, port, and the
    rest from the environment, as `scanbatch serve` reads them). Raises ScanbatchError with
    the end of the server's log when it cannot start."""
    found = running(settings)
    if found is not None:
        return found
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = settings.data_dir / LOG_FILE
    env = {
        **os.environ,
        "SCANBATCH_DATA_DIR": str(settings.data_dir),
        "SCANBATCH_HOST": settings.host,
        "SCANBATCH_PORT": str(settings.port),
        "SCANBATCH_EXTRACTOR": settings.extractor,
    }
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scanbatch.cli", "serve", "--no-first-key"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if on_start is not None:
        on_start(str(log))
    deadline = time.monotonic() + timeout
    while True:
        # Another page may have started one at the same moment: whichever holds the store.
        found = running(settings)
        if found is not None:
            return replace(found, started=found.pid == proc.pid)
        if proc.poll() is not None:
            raise ScanbatchError(
                f"Could not start a scanbatch server here (it exited with code "
                f"{proc.returncode}). The end of its log, {log}:\n{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise ScanbatchError(
                f"The scanbatch server started here did not answer within {timeout:g} s; see {log}"
            )
        time.sleep(0.2)


def _tail(path: os.PathLike[str], lines: int = 6) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"
