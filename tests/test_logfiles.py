"""The data folder's logs stay within their cap: a real `scanbatch serve --log-file` (as the
workbench starts it) on a real folder, its log filled by real refused requests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from scanbatch.logfiles import rotate_if_over
from scanbatch.testing.servers import ROOT, ServerProcess

CAP = 4096
BACKUPS = 2


def test_rotate_if_over_moves_the_file_aside_and_keeps_so_many(tmp_path):
    log = tmp_path / "warm_kernels.log"
    for n in range(5):
        log.write_text(f"generation {n}\n" * 400)
        assert rotate_if_over(log, CAP, BACKUPS)
    assert not log.exists()
    assert "generation 4" in (tmp_path / "warm_kernels.log.1").read_text()
    assert "generation 3" in (tmp_path / "warm_kernels.log.2").read_text()
    assert not (tmp_path / "warm_kernels.log.3").exists()
    log.write_text("small\n")
    assert not rotate_if_over(log, CAP, BACKUPS)
    assert log.read_text() == "small\n"


def _wait_for(path: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for part in path.parent.glob(path.name + "*"):
            if text in part.read_text(errors="replace"):
                return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {path}")


def _open_logs(pid: int, folder: Path) -> dict[int, str]:
    """The server's descriptors that point into the data folder's logs (or deleted files)."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if (target.startswith(str(folder)) and ".log" in target) or "(deleted)" in target:
            found[int(fd)] = target
    return found


@pytest.mark.slow
def test_the_server_log_and_the_kernels_log_rotate_at_their_cap(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    log = data_dir / "server.log"
    log.write_text("an old line of an earlier server\n" * 300)  # over the cap already
    warm_log = data_dir / "warm_kernels.log"
    warm_log.write_text("an old line of an earlier kernel\n" * 300)
    env = ServerProcess(
        data_dir, SCANBATCH_LOG_MAX_BYTES=str(CAP), SCANBATCH_LOG_BACKUPS=str(BACKUPS)
    ).env
    # As the workbench starts it: a relative log path, from the repository root.
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanbatch.cli", "serve", "--no-first-key", "--log-file", str(log)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(log, "listening on ")
        banner = next(
            line
            for part in data_dir.glob("server.log*")
            for line in part.read_text().splitlines()
            if "listening on " in line
        )
        url = banner.split("listening on ", 1)[1].split()[0]
        # Each refused upload is one INFO line (~150 bytes): some 30 KB of log, several caps.
        for n in range(200):
            r = requests.post(f"{url}/library/scan/batch", data=b"x" * n, timeout=10)
            assert r.status_code == 401
        _wait_for(log, "refused from its headers")
        time.sleep(0.5)
        parts = sorted(p.name for p in data_dir.glob("server.log*"))
        assert parts == ["server.log", "server.log.1", "server.log.2"]
        for name in parts:
            size = (data_dir / name).stat().st_size
            assert size <= CAP + 1024, f"{name} is {size} bytes"
        everything = "".join((data_dir / name).read_text() for name in parts)
        assert "an old line of an earlier server" not in everything  # went with the oldest
        assert everything.count("refused from its headers") >= 20
        # stdout and stderr moved with the log: nothing holds a renamed or deleted log open.
        held = _open_logs(proc.pid, data_dir)
        assert os.readlink(f"/proc/{proc.pid}/fd/1") == str(log)
        assert os.readlink(f"/proc/{proc.pid}/fd/2") == str(log)
        assert all(target == str(log) for target in held.values()), held
        # The kernels' log went aside when the first notebook process started.
        assert "an old line of an earlier kernel" in (data_dir / "warm_kernels.log.1").read_text()
        assert warm_log.stat().st_size < CAP
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0
