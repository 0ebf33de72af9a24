"""The warm notebook process: kernel start with retry, then exactly one job."""

import json
import subprocess
import sys

import pytest
from jupyter_client.manager import KernelManager

from scanbatch import warm_kernel
from scanbatch.runner import NOTEBOOK
from scanbatch.settings import REPO_ROOT

pytestmark = pytest.mark.slow


def test_a_failed_kernel_start_is_retried(monkeypatch):
    real_start = KernelManager.start_kernel
    calls = []

    def flaky_start(self, **kw):
        calls.append(1)
        if len(calls) == 1:  # what a port race looks like from here
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real_start(self, **kw)

    monkeypatch.setattr(KernelManager, "start_kernel", flaky_start)
    km = warm_kernel.start_kernel("fake", ["tests.fakes"])
    try:
        assert km.is_alive() and len(calls) == 2
    finally:
        km.shutdown_kernel(now=True)


def start_ready() -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanbatch.warm_kernel", "fake", "tests.fakes"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_process_runs_one_job_after_saying_ready(tmp_path):
    out = tmp_path / "out.ipynb"
    log = tmp_path / "job.log"
    proc = start_ready()
    job = {  # a job folder that does not exist: the notebook fails, and says why
        "input": str(NOTEBOOK),
        "output": str(out),
        "parameters": {"job_dir": str(tmp_path / "nope"), "extractor": "fake"},
        "cwd": str(tmp_path),
        "log": str(log),
    }
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.close()
    assert proc.wait(timeout=120) == 1
    executed = json.loads(out.read_text())
    errors = [
        o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"
    ]
    assert errors and errors[0]["ename"] == "FileNotFoundError"
    # The warm-up ran silently: the notebook's own cells are numbered from 1.
    counts = [c["execution_count"] for c in executed["cells"] if c["cell_type"] == "code"]
    assert counts[0] == 1
    assert "notebook failed" in log.read_text()


def test_eof_before_a_job_exits_cleanly():
    proc = start_ready()
    proc.stdin.close()  # the server went away
    assert proc.wait(timeout=60) == 0
