"""Notebook processes kept warm for the job queue (`scanbatch.runner`): each a
`python -m scanbatch.warm_kernel` with its kernel started and warmed, ready to run one job.

Starting Python, papermill and a kernel takes seconds, longer than a small Gemini batch, so
the pool starts them ahead of the jobs, one at a time, and hands each job to a ready one."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from scanbatch.logfiles import rotate_if_over
from scanbatch.settings import Settings
from scanbatch.warm_kernel import PAUSE_BEFORE_SAVE_ENV

log = logging.getLogger(__name__)

WARM_LOG = "warm_kernels.log"
WARM_UP_WAIT = 120.0  # seconds a warm-up may take before the next one starts beside it


class WarmPool:
    """Processes of `scanbatch.warm_kernel` with a kernel started and warmed, ready for one
    job each. With `keep_warm`, taking one starts its replacement in the background.

    Every process is started by one long-lived thread: a warm process asks Linux to kill it
    when the thread that started it ends (PR_SET_PDEATHSIG), which must be when the server
    ends, not when a helper thread returns."""

    def __init__(
        self,
        settings: Settings,
        *,
        keep_warm: bool = True,
        warm_parameters: Callable[[], dict] = dict,
    ) -> None:
        self.settings = settings
        self.keep_warm = keep_warm
        self.warm_parameters = warm_parameters
        self.last_failure: str | None = None  # why the latest kernel start failed, if it did
        self._settled = threading.Event()  # a first process is ready, or failed to start
        self._ready: queue.Queue[subprocess.Popen | str] = queue.Queue()
        self._all: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._starting = 0
        self._requests: queue.Queue[bool] = queue.Queue()
        self._spawner: threading.Thread | None = None

    @property
    def ready(self) -> int:
        """Processes waiting for a job (a failed start is queued too, as its reason)."""
        with self._ready.mutex:
            return sum(isinstance(item, subprocess.Popen) for item in self._ready.queue)

    def wait_first(self, timeout: float) -> bool:
        """Wait until a first process is ready or has failed to start; False on timeout."""
        return self._settled.wait(timeout)

    def fill(self, count: int) -> None:
        """Start `count` processes, one after the other (the first is not slowed by the rest,
        and the server answers once it is up)."""
        for _ in range(count):
            self._spawn_async()

    def _spawn_async(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._starting += 1
            if self._spawner is None:
                self._spawner = threading.Thread(
                    target=self._spawn_loop, name="warm-spawner", daemon=True
                )
                self._spawner.start()
        self._requests.put(True)

    def _spawn_loop(self) -> None:
        while self._requests.get():
            try:
                proc = self._spawn()
            except OSError as exc:  # cannot even start Python: every job would fail the same
                log.error("could not start a notebook process: %s", exc)
                proc = f"could not start a notebook process: {exc}"
            if isinstance(proc, subprocess.Popen):
                settled = threading.Event()
                threading.Thread(
                    target=self._await_ready, args=(proc, settled), name="warm-ready", daemon=True
                ).start()
                # One warm-up at a time: several at once take the CPU from the server and from
                # the jobs running (measured: job GET p99 33 ms with five starting together).
                # A start that hangs holds the next one back for WARM_UP_WAIT at most.
                settled.wait(WARM_UP_WAIT)
                continue
            with self._lock:
                self._starting -= 1
            if proc is not None:
                self.last_failure = proc
                self._ready.put(proc)
                self._settled.set()

    def _spawn(self) -> subprocess.Popen | None:
        # The parameters are read from the server's store, which a shutdown closes right
        # after closing the pool: a replacement asked for by the last job must not start then.
        with self._lock:
            if self._closed:
                return None
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            parameters = self.warm_parameters()
        except Exception:  # the warm-up is an optimisation: the job gets its own parameters
            log.exception("could not work out warm-up parameters")
            parameters = {}
        warm_log = self.settings.data_dir / WARM_LOG
        rotate_if_over(warm_log, self.settings.log_max_bytes, self.settings.log_backups)
        with open(warm_log, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scanbatch.warm_kernel", json.dumps(parameters)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=kernel_env(),
                text=True,
                # Its own process group (killed whole), but the server's session: a session
                # of its own would be a scheduler group of its own (see warm_kernel).
                process_group=0,
            )
        with self._lock:
            if self._closed:
                kill(proc)
                proc.wait()
                return None
            self._all.add(proc)
        return proc

    def _await_ready(self, proc: subprocess.Popen, settled: threading.Event) -> None:
        try:
            self._settle(proc)
        finally:
            settled.set()

    def _settle(self, proc: subprocess.Popen) -> None:
        event = read_event(proc)
        with self._lock:
            self._starting -= 1
        if event.get("event") == "ready":
            self.last_failure = None
            self._ready.put(proc)
            self._settled.set()
            return
        reason = event.get("error") or f"it exited with code {proc.wait()}"
        with self._lock:
            closing = self._closed
        if not closing:  # a kernel our own shutdown killed while it started is no failure
            log.error("a notebook kernel failed to start (%s); see %s", reason, WARM_LOG)
        self._discard(proc)
        self.last_failure = f"{reason}; see {WARM_LOG} in SCANBATCH_DATA_DIR"
        self._ready.put(self.last_failure)
        self._settled.set()

    def take_with(
        self, job: dict, timeout: float = 180.0
    ) -> tuple[subprocess.Popen | None, str | None]:
        """A ready process that has been handed `job`, waiting for one if need be; or None and
        why no process could take it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            idle = self._ready.empty() and self._starting == 0
        if self.keep_warm or idle:
            self._spawn_async()  # the replacement, or the first one if none is coming
        while True:
            try:
                item = self._ready.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None, f"none was ready within {timeout:g} s; see {WARM_LOG}"
            if isinstance(item, str):
                return None, item
            try:
                give(item, job)
            except BrokenPipeError:  # it died while waiting in the pool; it never saw the job
                log.warning("a warm notebook process died while idle; taking another")
                self._discard(item)
                self._spawn_async()
                continue
            with self._lock:
                self._all.discard(item)
            return item, None

    def _discard(self, proc: subprocess.Popen) -> None:
        kill(proc)
        with self._lock:
            self._all.discard(proc)
        proc.wait()

    def close(self, timeout: float = 30.0) -> None:
        """Kill every process of the pool and wait for the spawner to end: once this returns
        nothing of the pool reads the store any more (the server closes it next)."""
        with self._lock:
            self._closed = True
            procs = list(self._all)
            self._all.clear()
            spawner = self._spawner
        self._requests.put(False)
        for proc in procs:
            kill(proc)
        # A warm-up under way ends with its killed process; one computing its parameters
        # finishes that (a catalog snapshot at most), then sees the pool closed.
        if spawner is not None and spawner is not threading.current_thread():
            spawner.join(timeout)


def kernel_env() -> dict[str, str]:
    """The environment of notebook processes: the server's, without any SCANBATCH_* variable.
    Settings reach the kernel only as notebook parameters; secrets (GEMINI_API_KEY,
    GOOGLE_GEMINI_BASE_URL) only through this environment."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCANBATCH_") or k == PAUSE_BEFORE_SAVE_ENV
    }


def give(proc: subprocess.Popen, job: dict) -> None:
    """Hand a warm process its job (its first, or the next on the same kernel). stdin stays
    open: closing it (`release`) tells the process no job follows, and it exits."""
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.flush()


def release(proc: subprocess.Popen) -> None:
    """No further job for this process: it exits once its run is over."""
    with contextlib.suppress(OSError, ValueError):  # gone already, or closed before
        proc.stdin.close()


def read_event(proc: subprocess.Popen) -> dict:
    """The next JSON event a warm process reports on its stdout; {} at its end (or garbage)."""
    line = proc.stdout.readline()
    try:
        event = json.loads(line) if line.strip() else {}
    except ValueError:
        log.error("unexpected output from a notebook process: %r", line[:200])
        return {}
    return event if isinstance(event, dict) else {}


def kill(proc: subprocess.Popen) -> None:
    """Kill the warm process's group; its kernel dies with it (a parent-death signal)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
