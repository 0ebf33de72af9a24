"""The warm notebook process: kernel start with retry (the only one), exactly one job, its
outcome reported from papermill's exception, and no kernel left behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from jupyter_client.manager import KernelManager

from scanbatch import warm_kernel
from scanbatch.settings import PROCESSING_NOTEBOOK, REPO_ROOT
from scanbatch.warm_pool import kernel_env
from tests.procs import alive, children, wait_gone

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
    km, kc, channel = warm_kernel.start_kernel()
    try:
        assert km.is_alive() and len(calls) == 2
        assert kc.is_alive()  # connected, for the job's papermill run
    finally:
        warm_kernel.hand_over(channel, None)
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def start_ready(**popen) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanbatch.warm_kernel"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=kernel_env(),
        **popen,
    )
    assert json.loads(proc.stdout.readline()) == {"event": "ready"}
    return proc


def test_papermill_replaces_the_notebook_whole(tmp_path, monkeypatch):
    """A reader that opened the notebook before a save still reads the old file whole, and the
    path then names the new one whole: never a truncated file in between."""
    from papermill.iorw import papermill_io

    monkeypatch.setattr(papermill_io, "_handlers", list(papermill_io._handlers))
    warm_kernel.write_notebooks_whole()
    path = tmp_path / "process_batch.ipynb"
    path.write_text('{"saved": 1}')
    with open(path) as held:
        papermill_io.write('{"saved": 2}', str(path))
        assert held.read() == '{"saved": 1}'
    assert path.read_text() == '{"saved": 2}'
    assert list(tmp_path.iterdir()) == [path]  # no partial file left


def test_a_failing_job_reports_papermills_error(tmp_path):
    out = tmp_path / "out.ipynb"
    log = tmp_path / "job.log"
    proc = start_ready()
    job = {  # a job folder that does not exist: the notebook fails, and says why
        "input": str(PROCESSING_NOTEBOOK),
        "output": str(out),
        "parameters": {"job_dir": str(tmp_path / "nope"), "extractor": "fake"},
        "cwd": str(tmp_path),
        "log": str(log),
    }
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.close()
    assert proc.wait(timeout=120) == 1
    event = json.loads(proc.stdout.readline())
    assert event["event"] == "failed"
    assert event["error"].startswith("FileNotFoundError: ") and "manifest.json" in event["error"]
    executed = json.loads(out.read_text())
    # The warm-up ran silently: the notebook's own cells are numbered from 1.
    counts = [c["execution_count"] for c in executed["cells"] if c["cell_type"] == "code"]
    assert counts[0] == 1
    assert "notebook failed" in log.read_text()


def autogroup_nice(pid: int) -> int | None:
    """The niceness of the process's scheduler autogroup (`/autogroup-N nice K`), None where
    the kernel has no autogroups (no file, or an empty one as in some containers)."""
    try:
        with open(f"/proc/{pid}/autogroup") as fh:
            found = re.search(r"nice (-?\d+)", fh.read())
    except FileNotFoundError:
        return None
    return int(found.group(1)) if found else None


def autogroups_enabled() -> bool:
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as fh:
            return fh.read().strip() == "1"
    except FileNotFoundError:
        return False


def niceness(pid: int) -> tuple[int, int | None]:
    return os.getpriority(os.PRIO_PROCESS, pid), autogroup_nice(pid)


def test_the_kernel_starts_the_job_before_the_notebooks_first_cell(tmp_path):
    """The warm process hands the job's parameters to its kernel as the job arrives; the
    kernel opens the job and starts its items at once, and papermill runs the notebook once
    they are started. This notebook's only cell finds the job begun, before the cell ran."""
    import nbformat

    from scanbatch.jobfolder import JobFolder
    from scanbatch.models import Manifest
    from scanbatch.testing.imaging import image_bytes

    folder = JobFolder.for_job(tmp_path / "jobs", "job-1")
    folder.create(Manifest.model_validate({"items": [{"imageCount": 1, "photoTypes": ["front"]}]}))
    folder.write_image(0, 0, image_bytes("JPEG"))
    notebook = tmp_path / "look.ipynb"
    nb = nbformat.v4.new_notebook()
    code = (
        "import time\n"
        "import scanbatch.kernel as k\n"
        "now = time.perf_counter()\n"
        "key, job = k._begun['job'].result(30)\n"
        "assert str(job.folder.path) == job_dir and job._started < now\n"
        "print('begun', len(job.process()))"
    )
    nb.cells.append(nbformat.v4.new_code_cell(code))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, notebook)
    proc = start_ready()
    job = {
        "input": str(notebook),
        "output": str(tmp_path / "out.ipynb"),
        "parameters": {
            "job_dir": str(folder.path),
            "extractor": "fake",
            "data_dir": str(tmp_path),
        },
        "cwd": str(tmp_path),
        "log": str(tmp_path / "job.log"),
    }
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0, (tmp_path / "job.log").read_text()
    assert json.loads(proc.stdout.readline()) == {"event": "done"}
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    assert "begun 1" in json.dumps(executed["cells"][-1]["outputs"])
    assert len(folder.results_path.read_text().splitlines()) == 1


def test_the_process_and_its_kernel_run_below_the_server_and_lower_still_while_waiting(
    tmp_path,
):
    """Polls must not wait behind kernels, nor a job behind the next kernel warming up. The
    warm process stays in the server's session (the runner starts it in a process group of its
    own), where nice ranks it; jupyter starts the kernel in a session of its own, which Linux
    makes a scheduler group of its own, in which nice counts for nothing against other groups:
    so that group's nice is set."""
    import nbformat

    proc = start_ready(process_group=0)
    try:
        kernels = children(proc.pid)
        assert kernels
        # A new session gets an autogroup of its own wherever the kernel enables them, even
        # where this test runs in the default group (whose /proc file is empty, as on CI).
        grouped = autogroups_enabled()
        waiting, running = warm_kernel.WARM_NICENESS, warm_kernel.JOB_NICENESS
        ours = autogroup_nice(os.getpid())
        assert niceness(proc.pid) == (waiting, ours)  # our group, untouched
        assert {niceness(pid) for pid in kernels} == {(waiting, waiting if grouped else None)}
        # A job that runs a few seconds: while it runs, both are up at the jobs' priority.
        notebook = tmp_path / "slow.ipynb"
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(5)"))
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nbformat.write(nb, notebook)
        job = {
            "input": str(notebook),
            "output": str(tmp_path / "out.ipynb"),
            "parameters": {},
            "cwd": str(tmp_path),
            "log": str(tmp_path / "job.log"),
        }
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.close()
        # An unprivileged process may not lower a nice again; then only the group counts.
        up = running if os.geteuid() == 0 else waiting
        group = running if grouped else None
        expected = {proc.pid: (up, ours), **{pid: (up, group) for pid in kernels}}
        deadline = time.monotonic() + 4
        while {pid: niceness(pid) for pid in expected} != expected:
            assert time.monotonic() < deadline, {pid: niceness(pid) for pid in expected}
            time.sleep(0.05)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert autogroup_nice(os.getpid()) == ours  # the test's own group was never touched


def test_a_kernel_still_starting_dies_with_its_warm_process():
    """The server's shutdown kills warm processes whatever they are doing, some while their
    kernel starts, before it could run any code of ours."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanbatch.warm_kernel"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=kernel_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while not (kernels := children(proc.pid)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    # At once: not after ipykernel notices, once started, that its parent is gone.
    assert wait_gone(kernels, timeout=0.5) == []


def test_eof_before_a_job_exits_cleanly_and_ends_its_kernel():
    proc = start_ready()
    kernels = children(proc.pid)
    assert kernels  # the kernel is this process's child
    proc.stdin.close()  # the server went away
    assert proc.wait(timeout=60) == 0
    assert wait_gone(kernels) == []


def test_the_process_and_its_kernel_die_with_their_parent(tmp_path):
    """A parent killed with -9 runs no clean-up, and here the warm process's stdin stays open
    (this test holds the pipe), so only the parent-death signal can end it: it must, and the
    kernel with it, although both run in sessions of their own."""
    pid_file = tmp_path / "pids"
    stdin_read, stdin_write = os.pipe()
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-m', 'scanbatch.warm_kernel'],"
            f" stdin={stdin_read}, stdout=subprocess.PIPE, start_new_session=True)\n"
            "p.stdout.readline()\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
            "time.sleep(600)\n",
        ],
        cwd=REPO_ROOT,
        env=kernel_env(),
        pass_fds=(stdin_read,),
    )
    os.close(stdin_read)
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.1)
        warm = int(pid_file.read_text())
        kernels = children(warm)
        assert alive(warm) and kernels
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert wait_gone([warm, *kernels]) == []
    finally:
        os.close(stdin_write)
