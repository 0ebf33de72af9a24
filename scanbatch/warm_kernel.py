"""One papermill execution in its own OS process, started before its job arrives.

Starting Python, importing papermill, starting a kernel and importing scanbatch and the
extractors in it takes seconds: longer than a 10-item Gemini batch itself. So the runner keeps
one such process warm per worker. It starts a kernel (the one place a kernel start is retried),
warms it, reports `ready`, then reads one job (a JSON line) on stdin, executes the notebook with
papermill on that kernel, reports how it went and exits.

`python -m scanbatch.warm_kernel [PARAMETERS]` takes, optionally, the notebook parameters the
next job will most likely get (JSON: the server's settings and catalog snapshot, never a
secret), used only to warm the kernel (build the extractor, load the catalog index). The job
arrives as a JSON line on stdin; its papermill parameters are what the notebook runs with.
Secrets come from the environment. Its stdout carries JSON lines for the runner (`{"event":
"ready"}`, then `{"event": "done"}` or `{"event": "failed", "error": ...}`, sent before the
kernel is shut down); whatever else it prints goes to the job's log. It dies with its parent
(a parent-death signal), and so does its kernel, so a server killed with -9 leaves no kernel
sending photos.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_client.manager import KernelManager

KERNEL_NAME = "python3"
# Below the server: on a small machine, kernels starting up would otherwise take the CPU from
# the threads answering the app's polls (measured: poll p99 ~1 s while 5 jobs start, on 2 cores).
NICENESS = 10
START_ATTEMPTS = 3
START_TIMEOUT = 60
PR_SET_PDEATHSIG = 1
# Run silently, so that the executed notebook's cell numbers still start at 1; it leaves no
# name in the kernel but `scanbatch` (the notebook imports it anyway).
WARM_CODE = "import scanbatch.kernel\nscanbatch.kernel.warm({parameters!r})"

log = logging.getLogger("scanbatch.warm_kernel")


class KernelStartError(RuntimeError):
    pass


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies. The parent may already be gone
    (then this process was re-parented): exit at once rather than run as an orphan."""
    if not sys.platform.startswith("linux"):
        return  # elsewhere the stdin EOF and ipykernel's parent poller are the only guards
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() == 1:
        os._exit(1)


def lower_autogroup(pid: int | str = "self") -> None:
    """Give the process's scheduler autogroup the same niceness as the process. Linux puts each
    new session in its own autogroup, and nice only ranks processes within one group: a kernel
    (jupyter starts each in a new session) at nice 10 would still get as much CPU as the whole
    server. Best effort: without autogroups (or on another OS) there is nothing to do."""
    path = f"/proc/{pid}/autogroup"
    for _ in range(20):
        try:
            with open(path, "w") as fh:
                fh.write(str(NICENESS))
            return
        except FileNotFoundError:
            return
        except BlockingIOError:  # unprivileged: one change per 100 ms on the whole machine
            time.sleep(0.1)
        except OSError as exc:
            log.warning("could not lower the scheduler group of pid %s: %s", pid, exc)
            return


def start_kernel(parameters: str = "{}") -> KernelManager:
    """A started kernel, warmed for a job with these parameters (JSON). A start that fails is
    retried: several kernels starting at once can race for the same ports."""
    from jupyter_client.manager import KernelManager

    last_error: Exception | None = None
    for attempt in range(1, START_ATTEMPTS + 1):
        km = KernelManager(kernel_name=KERNEL_NAME)
        try:
            km.start_kernel()
            lower_autogroup(km.provisioner.pid)
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=START_TIMEOUT)
            code = WARM_CODE.format(parameters=parameters)
            reply = kc.execute_interactive(code, silent=True, store_history=False, timeout=120)
            kc.stop_channels()
        except Exception as exc:
            last_error = exc
            log.warning("kernel start attempt %d failed: %s", attempt, exc)
            if km.has_kernel:
                km.shutdown_kernel(now=True)
            continue
        if reply["content"]["status"] != "ok":
            # Not a start-up race: the job would fail the same way, and will say why.
            log.warning("warm-up failed: %s", reply["content"].get("evalue"))
        return km
    raise KernelStartError(f"kernel did not start after {START_ATTEMPTS} attempts: {last_error}")


def execute(job: dict[str, Any], km: KernelManager) -> str | None:
    """Run the job's notebook on `km`: None on success, else why it failed, taken from
    papermill's exception."""
    import papermill

    common = {
        "parameters": job["parameters"],
        "kernel_name": KERNEL_NAME,
        "progress_bar": False,
        "cwd": job["cwd"],
    }
    try:
        # The parameterised notebook goes to disk first, so a run killed at its time limit
        # still leaves what it was asked to do. The run then saves once, at its end, not at
        # every cell: each save re-validates and rewrites the whole notebook, thumbnails
        # included (measured: 0.78 s vs 0.67 s for a 10-item job under load, 0.64 s for the
        # old two-cell notebook).
        papermill.execute_notebook(job["input"], job["output"], prepare_only=True, **common)
        papermill.execute_notebook(
            job["input"],
            job["output"],
            km=km,
            log_output=False,
            request_save_on_cell_execute=False,
            **common,
        )
    except papermill.PapermillExecutionError as exc:
        log.error("notebook failed in cell %s: %s: %s", exc.exec_count, exc.ename, exc.evalue)
        return f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # the kernel died, the notebook could not be written, ...
        log.exception("notebook execution failed")
        return f"{type(exc).__name__}: {exc}"
    return None


def emit(channel: IO[str], event: str, **fields: Any) -> None:
    channel.write(json.dumps({"event": event, **fields}) + "\n")
    channel.flush()


def main() -> int:
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.nice(NICENESS)  # inherited by the kernel
    lower_autogroup()
    # The runner's channel is a private copy of stdout (os.dup makes it non-inheritable); fd 1
    # goes to the log, so the kernel never holds the pipe and the runner sees EOF when this
    # process ends. Once the job arrives, fds 1 and 2 go to the job's log.
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import papermill  # noqa: F401  (imported before `ready`: part of the warm-up)

    try:
        km = start_kernel(sys.argv[1] if len(sys.argv) > 1 else "{}")
    except KernelStartError as exc:
        emit(channel, "failed", error=str(exc))
        return 1
    try:
        emit(channel, "ready")
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # the runner went away before giving us a job
        job = json.loads(line)
        with open(job["log"], "ab", buffering=0) as log_file:
            os.dup2(log_file.fileno(), 1)
            os.dup2(log_file.fileno(), 2)
        error = execute(job, km)
        if error is None:
            emit(channel, "done")
            return 0
        emit(channel, "failed", error=error)
        return 1
    finally:
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    sys.exit(main())
