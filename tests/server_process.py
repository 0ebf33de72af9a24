"""A real scanbatch server in a subprocess on 127.0.0.1, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
FINISHED = ("completed", "failed")
# The repository (for `tests.fakes`) and the dist-info that declares the fake extractors.
TEST_PYTHONPATH = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "entry_points")])
# Base URLs of the servers tests started: their responses are checked against /openapi.json
# (tests/conftest.py), other loopback servers (the fake Gemini) are not.
SERVER_URLS: set[str] = set()


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        extractor: str = "fake",
        *,
        first_key: bool = False,
        args: tuple[str, ...] = (),
        new_session: bool = False,
        **env: str,
    ) -> None:
        self.args = args
        self.new_session = new_session  # its own process group, which a test may kill whole
        self.data_dir = Path(data_dir)
        self.first_key = first_key
        self.banner: list[str] = []
        self.env = {
            **os.environ,
            "SCANBATCH_DATA_DIR": str(self.data_dir),
            "SCANBATCH_EXTRACTOR": extractor,
            "SCANBATCH_PORT": "0",
            # The fake extractors' entry points, for the server and its kernels.
            "PYTHONPATH": TEST_PYTHONPATH,
            **env,
        }
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 60) -> ServerProcess:
        # Open for the server's whole life; closed in stop().
        self.log = open(self.data_dir.parent / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py")]
            + ([] if self.first_key else ["--no-first-key"])
            + list(self.args),
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=self.new_session,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server exited early; see {self.log.name}")
            self.banner.append(line.rstrip("\n"))
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
                SERVER_URLS.add(self.url)
                return self
        raise RuntimeError("server did not start in time")

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def poll(self, job_id: str, token: str, until, timeout: float = 90) -> list[dict]:
        """GET the job until `until(body)` holds; every body seen, in order."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = requests.get(
                f"{self.url}/library/scan/batch/{job_id}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).json()
            seen.append(body)
            if until(body):
                return seen
            time.sleep(0.1)
        raise AssertionError(f"job {job_id}: condition not met in {timeout} s: {seen[-1:]}")

    def wait_finished(self, job_id: str, token: str, timeout: float = 90) -> dict:
        return self.poll(job_id, token, lambda b: b.get("status") in FINISHED, timeout)[-1]


def start_launcher(data_dir: Path, extractor: str = "fake") -> tuple[subprocess.Popen, dict]:
    """`python -m scanbatch.workbench.launch` (what `make run` runs) on free ports, and what it
    printed: the API's and the page's addresses and the token."""
    import re

    env = {
        **os.environ,
        "SCANBATCH_DATA_DIR": str(data_dir),
        "SCANBATCH_EXTRACTOR": extractor,
        "PYTHONPATH": TEST_PYTHONPATH,
    }
    env.pop("GEMINI_API_KEY", None)
    args = ["--port", "0", "--voila-port", "0", "--no-demo"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanbatch.workbench.launch", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    banner: dict[str, str] = {}
    for line in proc.stdout:
        for key, pattern in (
            ("api", r"scanbatch API:\s+(\S+)"),
            ("page", r"workbench:\s+(\S+)"),
            ("token", r"API token:\s+(\S+)"),
        ):
            if m := re.search(pattern, line):
                banner[key] = m.group(1)
        if "Ctrl-C" in line:
            break
    return proc, banner
