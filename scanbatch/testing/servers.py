"""A real scanbatch server in a subprocess on 127.0.0.1 (and the launcher `make run` starts),
for end-to-end tests and benchmarks; the API keys of their usual users."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from scanbatch.names import Role
from scanbatch.settings import REPO_ROOT

ROOT = REPO_ROOT
FINISHED = ("completed", "failed")
# The repository (a copied work tree runs its own code) and the dist-info that declares the
# fake extractors.
TEST_PYTHONPATH = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "entry_points")])
# Base URLs of the servers tests started: their responses are checked against /openapi.json
# (tests/conftest.py), other loopback servers (the fake Gemini) are not.
SERVER_URLS: set[str] = set()


def keys(store):
    """Tokens for a director, a second director, a dj and a station manager."""
    out = {}
    for name, user, role in (
        ("director", "alice", Role.MUSIC_DIRECTOR),
        ("other", "bob", Role.MUSIC_DIRECTOR),
        ("dj", "dave", Role.DJ),
        ("manager", "mia", Role.STATION_MANAGER),
    ):
        out[name] = store.keys.create(user, role)[1]
    return out


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


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


def copy_work_tree(dest: Path) -> Path:
    """The repository as its work tree is now (tracked files, edited or not, and new files not
    committed yet; no runtime state of data/), copied to `dest`: a checkout of its own, where a
    test can run exactly what `make run` runs without touching the developer's data/ folder."""

    def listed(*args: str) -> set[str]:
        out = subprocess.run(
            ["git", "ls-files", "-z", *args], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        return {name for name in out.split("\0") if name}

    new = {n for n in listed("--others", "--exclude-standard") if not n.startswith("data/")}
    for name in sorted(listed("--cached") | new):
        src = ROOT / name
        if src.is_file():  # not deleted in the work tree
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def launcher_env(root: Path = ROOT, **env: str) -> dict[str, str]:
    """The environment of a launcher run from `root`: the fake extractors' entry points and the
    package from `root` first, no Gemini key, no token nor setting from the caller's shell."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCANBATCH_") and k not in ("GEMINI_API_KEY", "JUPYTER_TOKEN")
    }
    paths = os.pathsep.join([str(root), str(root / "tests" / "entry_points")])
    return {**base, "PYTHONPATH": paths, "SCANBATCH_EXTRACTOR": "fake", **env}


class Launcher:
    """`python -m scanbatch.workbench.launch` (what `make run` runs) in a process of its own,
    from `root` (its working directory), on free ports; everything it and its children print,
    stdout and stderr, is kept in `output`."""

    def __init__(self, root: Path = ROOT, *args: str, **env: str) -> None:
        self.root = root
        self.args = ["--port", "0", "--voila-port", "0", *args]
        self.env = launcher_env(root, **env)
        self.lines: list[str] = []
        self.banner: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None
        self._changed = threading.Condition()

    def start(self, timeout: float = 240) -> Launcher:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scanbatch.workbench.launch", *self.args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("Ctrl-C", timeout)
        for key, pattern in (
            ("api", r"scanbatch API:\s+(\S+)"),
            ("page", r"workbench:\s+(\S+)"),
            ("token", r"API token:\s+(\S+)"),
        ):
            if m := re.search(pattern, self.output):
                self.banner[key] = m.group(1)
        if m := re.search(r"[?&]token=([^&\s]+)", self.banner.get("page", "")):
            self.banner["page_token"] = m.group(1)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # the end
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        """Until `text` has been printed; fails with everything printed so far."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: text in "".join(self.lines) or (self.lines and self.lines[-1] == ""),
                timeout,
            )
        if not ok or text not in self.output:
            raise AssertionError(f"the launcher never printed {text!r}:\n{self.output}")

    def stop(self, signum: int = signal.SIGINT, timeout: float = 90) -> int:
        """Send `signum` (Ctrl-C by default); its exit code once it and its output ended."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"the launcher did not stop in {timeout} s:\n{self.output}"
            ) from None
        with self._changed:  # its output read to the end
            self._changed.wait_for(lambda: self.lines and self.lines[-1] == "", 30)
        return code
