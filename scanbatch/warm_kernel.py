"""One papermill execution in its own OS process, started before its job arrives.

Starting Python, importing papermill, starting a kernel and importing scanbatch and the
extractors in it takes seconds: longer than a 10-item Gemini batch itself. So the runner's pool
(`scanbatch.warm_pool`) keeps one such process warm per worker. It starts a kernel (the one
place a kernel start is retried), warms it, reports `ready`, then reads one job (a JSON line) on
stdin, executes the notebook with papermill on that kernel and reports how it went. It then
reads stdin again: the runner may give the same kernel the next job of a group (answered
backlog jobs, `JobRunner.submit_group`), or close stdin, and the process exits.

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

import contextlib
import ctypes
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_client.client import KernelClient
    from jupyter_client.manager import KernelManager

KERNEL_NAME = "python3"
ENGINE = "scanbatch-connected"
# Below the server, or kernels take the CPU from the threads answering the app's polls
# (measured: job GET p99 840 ms while 5 jobs start, on 2 cores). Linux gives each session its
# own scheduler group (autogroup), and nice ranks processes only within a group: six busy
# processes in sessions of their own slowed a CPU-bound loop of the server's group 3.9x
# whatever their nice, 1.2x once their groups' nice was 10, 1.1x at 19. So the warm process
# stays in the server's session (in a process group of its own), where its nice counts; the
# kernel, which jupyter starts in a session of its own, gets its group's nice set too. Both
# wait for their job at 19, so that warming the next kernel does not slow the job that runs,
# and run it at 10.
JOB_NICENESS = 10
WARM_NICENESS = 19
# A processing kernel keeps no input history (the executed notebook is the record) and runs
# no cell as a coroutine (the notebook awaits nothing): without the history database and the
# check for top-level `await`, a cell costs the kernel ~6.5 ms of CPU instead of ~8.5 ms.
KERNEL_ARGUMENTS = ["--HistoryManager.enabled=False", "--InteractiveShell.autoawait=False"]
# Tests hold a run here, after its last cell and before its notebook is saved, to kill the
# server in that window: the variable names a file the run creates when it gets there.
PAUSE_BEFORE_SAVE_ENV = "SCANBATCH_TEST_PAUSE_BEFORE_NOTEBOOK_SAVE"
HEAD_START_WAIT = 5.0  # seconds the notebook waits for the kernel to start the job's items
START_ATTEMPTS = 3
START_TIMEOUT = 60
PR_SET_PDEATHSIG = 1
# Run silently, so that the executed notebook's cell numbers still start at 1; it leaves no
# name in the kernel but `scanbatch` (the notebook imports it anyway).
WARM_CODE = "import scanbatch.kernel\nscanbatch.kernel.prepare({parameters!r}, job_fd={job_fd})"

log = logging.getLogger("scanbatch.warm_kernel")


class KernelStartError(RuntimeError):
    pass


def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies. The parent may already be gone
    (then this process was re-parented): exit at once rather than run as an orphan."""
    if not sys.platform.startswith("linux"):
        return  # elsewhere the stdin EOF and ipykernel's parent poller are the only guards
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() == 1 or (parent is not None and os.getppid() != parent):
        os._exit(1)


def kernel_setup(parent: int) -> None:
    """Run in the kernel's process between fork and exec (after jupyter's setsid): it dies with
    this process from its first instruction (a kernel killed with its warm process while still
    starting would otherwise outlive it), and its new scheduler group is set low."""
    die_with_parent(parent)
    set_group_niceness(os.getpid(), WARM_NICENESS)


def set_niceness(pid: int, niceness: int) -> None:
    """Best effort: an unprivileged process may not lower a nice again (19 to 10)."""
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpriority(os.PRIO_PROCESS, pid, niceness)


def set_group_niceness(pid: int, niceness: int) -> None:
    """The niceness of the scheduler autogroup of `pid`, which must lead its own session: the
    group is the whole session's, and lowering the server's would slow the server. Best
    effort: without autogroups there is nothing to set."""
    try:
        if os.getsid(pid) != pid:
            log.warning("pid %s does not lead its session: its scheduler group is left", pid)
            return
    except ProcessLookupError:
        return
    path = f"/proc/{pid}/autogroup"
    for _ in range(20):
        try:
            with open(path, "w") as fh:
                fh.write(str(niceness))
            return
        except FileNotFoundError:
            return
        except BlockingIOError:  # unprivileged: one change per 100 ms on the whole machine
            time.sleep(0.1)
        except OSError as exc:
            log.warning("could not set the scheduler group of pid %s: %s", pid, exc)
            return


def start_kernel(parameters: str = "{}") -> tuple[KernelManager, KernelClient, socket.socket]:
    """A started kernel, warmed for a job with these parameters (JSON), its client, still
    connected, and our end of a socket pair the kernel reads its job's parameters from (see
    `hand_over`). A start that fails is retried: several kernels starting at once can race for
    the same ports."""
    from jupyter_client.manager import KernelManager

    last_error: Exception | None = None
    for attempt in range(1, START_ATTEMPTS + 1):
        km, kc = KernelManager(kernel_name=KERNEL_NAME), None
        ours, theirs = socket.socketpair()
        try:
            # The kernel's end goes to it under the same number (jupyter passes Popen's
            # arguments through); ours is not inherited.
            km.start_kernel(
                extra_arguments=KERNEL_ARGUMENTS,
                preexec_fn=functools.partial(kernel_setup, os.getpid()),
                pass_fds=(theirs.fileno(),),
            )
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=START_TIMEOUT)
            code = WARM_CODE.format(parameters=parameters, job_fd=theirs.fileno())
            reply = kc.execute_interactive(code, silent=True, store_history=False, timeout=120)
        except Exception as exc:
            last_error = exc
            log.warning("kernel start attempt %d failed: %s", attempt, exc)
            ours.close()
            if kc is not None:
                kc.stop_channels()
            if km.has_kernel:
                km.shutdown_kernel(now=True)
            continue
        finally:
            theirs.close()
        if reply["content"]["status"] != "ok":
            # Not a start-up race: the job would fail the same way, and will say why.
            log.warning("warm-up failed: %s", reply["content"].get("evalue"))
        return km, kc, ours
    raise KernelStartError(f"kernel did not start after {START_ATTEMPTS} attempts: {last_error}")


def hand_over(channel: socket.socket, parameters: dict[str, Any] | None) -> None:
    """Send the kernel its job's parameters, then wait until it has started the job's items
    (`scanbatch.kernel.prepare`; HEAD_START_WAIT at most). The photos leave at once, and the
    notebook runs after that, so that its cells do not hold the requests back (Python runs one
    thread at a time); the app's answer does not wait for the notebook. Measured: the 10-item
    job answered ~70 ms sooner. No job (None) just closes the channel. Only a head start:
    whatever goes wrong here, the notebook opens the job itself and says what is wrong."""
    try:
        if parameters is not None:
            channel.sendall((json.dumps(parameters) + "\n").encode())
            channel.settimeout(HEAD_START_WAIT)
            channel.recv(64)  # "begun", or nothing when the kernel could not start the job
    except OSError as exc:  # a timeout included
        log.warning("the kernel's head start on the job did not complete: %s", exc)
    finally:
        channel.close()


def connected_engine(kc: KernelClient) -> type:
    """papermill's nbclient engine, executing on `kc`: a client the warm-up connected and saw
    answer. nbclient would connect a new one and wait until it is ready, and jupyter_client's
    readiness check ends by draining IOPub until it has been quiet for 0.2 s: a fixed fifth of
    a second on every job (of ~1.3 s for a 10-item Gemini batch)."""
    from nbclient.util import run_hook, run_sync
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine
    from papermill.log import logger

    class ConnectedClient(PapermillNotebookClient):
        def start_new_kernel_client(self) -> KernelClient:
            self.kc = kc
            self.kc.allow_stdin = False
            run_sync(run_hook)(self.on_notebook_start, notebook=self.nb)
            return self.kc

    class ConnectedEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: float | None = None,
            **kwargs: Any,
        ) -> Any:
            # As NBClientEngine does (papermill 2.x), with the connected client.
            kwargs.pop("input_path", None)
            kwargs.pop("startup_timeout", None)
            timeout = kwargs.pop("timeout", None)
            return ConnectedClient(
                nb_man,
                timeout=execution_timeout or timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                **kwargs,
            ).execute()

    return ConnectedEngine


def write_notebooks_whole() -> Any:
    """Make papermill replace its output notebook instead of rewriting it in place.

    papermill's local handler truncates the file and then writes it, at each of a run's two
    saves; anyone reading the notebook in between (the notebook endpoint, a browser, a
    benchmark) would get a torn file. papermill looks its handler up per path and has
    no public way to swap the one for plain paths, so the registered instance is replaced.
    Returns it; its `before_write`, when set, runs before each write."""
    from papermill.iorw import LocalHandler, papermill_io
    from papermill.utils import chdir

    class WholeFileHandler(LocalHandler):
        before_write: Any = None

        def write(self, buf: str, path: str) -> None:
            if self.before_write is not None:
                self.before_write()
            with chdir(self._cwd):
                folder, name = os.path.split(path)
                partial = os.path.join(folder, f".{name}.partial")
                super().write(buf, partial)
                os.replace(partial, path)

    whole = WholeFileHandler()
    papermill_io._handlers = [
        (scheme, whole if scheme == "local" else handler)
        for scheme, handler in papermill_io._handlers
    ]
    return whole


def pause_before_save() -> None:
    """Test-only (PAUSE_BEFORE_SAVE_ENV): wait here, for a kill, once the marker is written."""
    marker = os.environ.get(PAUSE_BEFORE_SAVE_ENV)
    if not marker:
        return
    Path(marker).write_text(str(os.getpid()))
    while True:
        time.sleep(60)


def execute(job: dict[str, Any], km: KernelManager, kc: KernelClient) -> str | None:
    """Run the job's notebook on `km` through its connected client `kc`: None on success, else
    why it failed, taken from papermill's exception."""
    import papermill
    from papermill.engines import papermill_engines

    papermill_engines.register(ENGINE, connected_engine(kc))
    handler = write_notebooks_whole()

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
        handler.before_write = pause_before_save  # the next write is the run's only save
        papermill.execute_notebook(
            job["input"],
            job["output"],
            km=km,
            log_output=False,
            request_save_on_cell_execute=False,
            engine_name=ENGINE,
            **common,
        )
    except papermill.PapermillExecutionError as exc:
        log.error("notebook failed in cell %s: %s: %s", exc.exec_count, exc.ename, exc.evalue)
        return f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # the kernel died, the notebook could not be written, ...
        log.exception("notebook execution failed")
        return f"{type(exc).__name__}: {exc}"
    return None


def prepare_papermill() -> None:
    """Import papermill and run its preparation once on the processing notebook, before any
    job: the first run in a process pays for imports and schema loading (measured: 72 ms, then
    5 ms)."""
    import tempfile

    import papermill

    from scanbatch.settings import PROCESSING_NOTEBOOK

    with tempfile.TemporaryDirectory(prefix="scanbatch-warm-") as tmp:
        try:
            papermill.execute_notebook(
                str(PROCESSING_NOTEBOOK),
                str(Path(tmp) / "warm.ipynb"),
                prepare_only=True,
                kernel_name=KERNEL_NAME,
                progress_bar=False,
            )
        except Exception as exc:  # only an optimisation: the job will say what is wrong
            log.warning("papermill warm-up failed: %s", exc)


def emit(channel: IO[str], event: str, **fields: Any) -> None:
    channel.write(json.dumps({"event": event, **fields}) + "\n")
    channel.flush()


def main() -> int:
    die_with_parent()
    # jsonschema imports rfc3987_syntax when it is installed (jupyter's dependencies install
    # it), which builds a grammar at import: 1.5 s of CPU in every warm process (papermill ->
    # nbformat -> jsonschema), for IRI formats that no notebook schema uses. jsonschema goes
    # without those checks when the import fails.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    set_niceness(os.getpid(), WARM_NICENESS)  # inherited by the kernel
    # The runner's channel is a private copy of stdout (os.dup makes it non-inheritable); fd 1
    # goes to the log, so the kernel never holds the pipe and the runner sees EOF when this
    # process ends. Once the job arrives, fds 1 and 2 go to the job's log.
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    prepare_papermill()
    try:
        km, kc, to_kernel = start_kernel(sys.argv[1] if len(sys.argv) > 1 else "{}")
    except KernelStartError as exc:
        emit(channel, "failed", error=str(exc))
        return 1
    try:
        emit(channel, "ready")
        line = sys.stdin.readline()
        if not line.strip():
            hand_over(to_kernel, None)
            return 0  # the runner went away before giving us a job
        job = json.loads(line)
        kernel = km.provisioner.pid
        for pid in (os.getpid(), kernel):  # up to the jobs' priority
            set_niceness(pid, JOB_NICENESS)
        # Beside the job: unprivileged, a group's nice changes once per 0.1 s machine-wide.
        threading.Thread(target=set_group_niceness, args=(kernel, JOB_NICENESS)).start()
        hand_over(to_kernel, job["parameters"])
        while True:
            with open(job["log"], "ab", buffering=0) as log_file:
                os.dup2(log_file.fileno(), 1)
                os.dup2(log_file.fileno(), 2)
            error = execute(job, km, kc)
            if error is None:
                emit(channel, "done")
            else:
                emit(channel, "failed", error=error)
                return 1
            # The runner may give this kernel its next job (answered backlog jobs, which send
            # nothing: their kernel is worth more than their isolation); end of file: none.
            line = sys.stdin.readline()
            if not line.strip():
                return 0
            job = json.loads(line)
            fresh_namespace(kc)
    finally:
        km.shutdown_kernel(now=True)


# What `fresh_namespace` runs in the kernel: the user's names and the output cache go (the last
# job's reports, thumbnails included), the cell count starts again. Not `%reset -f`: its forced
# garbage collection was two thirds of a reused kernel's CPU per job (py-spy, 50 backlog jobs).
_FRESH_NAMESPACE = """\
(lambda ip: (
    [ip.user_ns.pop(name) for name in [n for n in ip.user_ns if n not in ip.user_ns_hidden]],
    ip.history_manager.output_hist.clear(),
    ip.user_ns.update(_="", __="", ___=""),
    setattr(ip, "execution_count", 1),
))(get_ipython())
"""


def fresh_namespace(kc: KernelClient, timeout: float = 30.0) -> None:
    """Between two jobs on one kernel: the last job's names are gone and cell numbers start
    at 1 again, so the next executed notebook reads as if its kernel were new (the modules
    stay imported and the catalog index loaded: what reuse is for)."""
    msg_id = kc.execute(_FRESH_NAMESPACE, silent=True, store_history=False)
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            if reply["content"].get("status") != "ok":
                raise RuntimeError(f"could not reset the kernel: {reply['content']}")
            return


if __name__ == "__main__":
    sys.exit(main())
