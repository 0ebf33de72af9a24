"""The server's job runner: a queue and a bounded pool of papermill executions.

Each job runs `notebooks/process_batch.ipynb` in its own OS process group (papermill and its
kernel) under a wall-clock limit, because papermill has no execution timeout by default and
can hang when a kernel dies. While it runs, the runner ingests `results.jsonl` line by line,
so GET shows items completing one by one. Whatever happens to the notebook, the job ends:
items it did not finish fail with a message saying why."""

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
from pathlib import Path

from scanbatch.catalog_sync import CatalogSnapshot
from scanbatch.jobfolder import JobFolder, read_results
from scanbatch.settings import REPO_ROOT, Settings
from scanbatch.store import JobStore

log = logging.getLogger(__name__)

NOTEBOOK = REPO_ROOT / "notebooks" / "process_batch.ipynb"
KERNEL_START_ATTEMPTS = 3
PID_FILE = "papermill.pid"
CANCELLED = "cancelled"


class JobRunner:
    def __init__(self, store: JobStore, settings: Settings, *, poll_interval: float = 0.1) -> None:
        self.store = store
        self.settings = settings
        self.poll_interval = poll_interval
        self.snapshot = CatalogSnapshot(store, settings.catalog_snapshot)
        self.pool = WarmPool(settings)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancelled: set[str] = set()
        self._finished: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self.pool.fill(self.settings.runner_workers)
        for n in range(self.settings.runner_workers):
            t = threading.Thread(target=self._work, name=f"runner-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop taking jobs and kill running kernels; their jobs resume on the next start."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            _kill(proc)
        for t in self._threads:
            t.join(timeout=10)
        self.pool.close()

    def recover(self) -> list[str]:
        """Jobs left pending or processing by a previous server: ingest what their kernels
        already wrote, then queue them; items already in `results.jsonl` are not re-extracted."""
        resumed = []
        for job_id in self.store.unfinished_jobs():
            folder = self._folder(job_id)
            if not folder.exists():
                self.store.finish_job(job_id, "Job folder is missing: submit the batch again")
                continue
            _kill_orphan(folder)
            self._ingest(job_id, folder, 0)
            if not self.store.unfinished_items(job_id):
                self.store.finish_job(job_id)
                continue
            self.submit(job_id)
            resumed.append(job_id)
        if resumed:
            log.info("resuming %d unfinished job(s): %s", len(resumed), ", ".join(resumed))
        return resumed

    def submit(self, job_id: str) -> None:
        with self._lock:
            self._finished.setdefault(job_id, threading.Event())
        self._queue.put(job_id)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._procs)

    def cancel(self, job_id: str, timeout: float = 30.0) -> None:
        """Stop the job: finished items are kept, the others fail with "cancelled"."""
        with self._lock:
            self._cancelled.add(job_id)
            proc = self._procs.get(job_id)
            event = self._finished.get(job_id)
        if proc is not None:
            _kill(proc)
            if event is not None and event.wait(timeout):
                return
        # Queued or not in this runner at all: end it here; the worker skips finished jobs.
        self._ingest(job_id, self._folder(job_id), 0)
        self.store.finish_job(job_id, CANCELLED, CANCELLED)

    # -- work -----------------------------------------------------------------------------

    def _folder(self, job_id: str) -> JobFolder:
        return JobFolder.for_job(self.settings.jobs_dir, job_id)

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self._run(job_id)
            except Exception:  # the runner must survive any job
                log.exception("job %s: runner error", job_id)
                try:
                    self.store.finish_job(job_id, "Internal error while running the job")
                except Exception:
                    log.exception("job %s: could not finish", job_id)
            finally:
                with self._lock:
                    event = self._finished.pop(job_id, None)
                    self._cancelled.discard(job_id)
                if event is not None:
                    event.set()

    def _run(self, job_id: str) -> None:
        if not self.store.unfinished_items(job_id):  # cancelled or deleted while queued
            return
        folder = self._folder(job_id)
        self.store.mark_processing(job_id)
        snapshot = self.snapshot.ensure()
        offset = 0
        message = None
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            offset, message = self._execute(job_id, folder, snapshot, offset)
            if message is None or not _kernel_never_ran(folder.notebook_path):
                break
            if job_id in self._cancelled or self._stopping.is_set():
                break
            log.warning("job %s: kernel start failed (attempt %d): %s", job_id, attempt, message)
        if self._stopping.is_set() and job_id not in self._cancelled:
            return  # server shutting down: leave the job unfinished; the next start resumes it
        self._ingest(job_id, folder, offset)
        code = "notebook_failed"
        if job_id in self._cancelled:
            message = code = CANCELLED
        self.store.finish_job(job_id, message, code)

    def _execute(
        self, job_id: str, folder: JobFolder, snapshot: Path | None, offset: int
    ) -> tuple[int, str | None]:
        """One papermill run in a warm process. Returns the results offset and None on
        success, else why not."""
        params = {
            "job_dir": str(folder.path.resolve()),
            "extractor": self.store.job_extractor(job_id) or self.settings.extractor,
            "item_concurrency": self.settings.item_concurrency,
            "catalog_snapshot": str(snapshot.resolve()) if snapshot else "",
            "plugins": self.settings.plugin_modules,
        }
        log_path = folder.path / "papermill.log"
        proc = self.pool.take()
        if proc is None:
            return offset, (
                "Could not start a notebook kernel; see warm_kernels.log in SCANBATCH_DATA_DIR"
            )
        pid_file = folder.path / PID_FILE
        pid_file.write_text(str(proc.pid))
        with self._lock:
            self._procs[job_id] = proc
        deadline = time.monotonic() + self.settings.notebook_timeout
        timed_out = False
        try:
            job = {
                "input": str(NOTEBOOK),
                "output": str(folder.notebook_path.resolve()),
                "parameters": params,
                "cwd": str(folder.path.resolve()),
                "log": str(log_path.resolve()),
            }
            try:
                proc.stdin.write(json.dumps(job) + "\n")
                proc.stdin.close()
            except OSError:  # it died after saying ready; the caller retries
                pass
            while proc.poll() is None:
                offset = self._ingest(job_id, folder, offset)
                if time.monotonic() > deadline:
                    timed_out = True
                    _kill(proc)
                    break
                if job_id in self._cancelled:
                    _kill(proc)
                    break
                time.sleep(self.poll_interval)
            proc.wait()
        finally:
            with self._lock:
                self._procs.pop(job_id, None)
            pid_file.unlink(missing_ok=True)
        offset = self._ingest(job_id, folder, offset)
        if timed_out:
            return offset, (
                f"Processing notebook exceeded SCANBATCH_NOTEBOOK_TIMEOUT "
                f"({self.settings.notebook_timeout:g} s) and was stopped"
            )
        if proc.returncode == 0:
            return offset, None
        return offset, "Processing notebook failed: " + _notebook_error(folder, log_path)

    def _ingest(self, job_id: str, folder: JobFolder, offset: int) -> int:
        outcomes, offset = read_results(folder.results_path, offset)
        if outcomes:
            self.store.record_outcomes(job_id, outcomes)
        return offset


class WarmPool:
    """Processes of `scanbatch.warm_kernel` with a kernel started and warmed, ready for one
    job each. Taking one starts its replacement in the background."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ready: queue.Queue[subprocess.Popen] = queue.Queue()
        self._all: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def ready(self) -> int:
        return self._ready.qsize()

    def fill(self, count: int) -> None:
        for _ in range(count):
            self._spawn_async()

    def _spawn_async(self) -> None:
        threading.Thread(target=self._spawn, name="warm-kernel", daemon=True).start()

    def _spawn(self) -> None:
        env = self.settings.child_env(dict(os.environ))
        # Plugins (e.g. a test's fake extractor) are importable from the server's directory.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.getcwd(), str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "scanbatch.warm_kernel",
            self.settings.extractor,
            *self.settings.plugin_modules,
        ]
        with open(self.settings.data_dir / "warm_kernels.log", "ab") as log_file:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=env,
                text=True,
                start_new_session=True,
            )
        with self._lock:
            if self._closed:
                _kill(proc)
                return
            self._all.add(proc)
        if proc.stdout.readline().strip() == "ready":
            self._ready.put(proc)
        else:
            log.error("a notebook kernel failed to start; see warm_kernels.log")
            self._discard(proc)

    def take(self, timeout: float = 180.0) -> subprocess.Popen | None:
        """A ready process (waiting for one if need be), or None if none starts in time."""
        deadline = time.monotonic() + timeout
        self._spawn_async()  # the replacement, or the first one if none is ready yet
        while True:
            try:
                proc = self._ready.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if proc.poll() is None:
                with self._lock:
                    self._all.discard(proc)
                return proc
            self._discard(proc)  # died while waiting; try the next
            self._spawn_async()

    def _discard(self, proc: subprocess.Popen) -> None:
        _kill(proc)
        with self._lock:
            self._all.discard(proc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            procs = list(self._all)
            self._all.clear()
        for proc in procs:
            _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    """Kill papermill and its kernel together (they share a new session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _kill_orphan(folder: JobFolder) -> None:
    """A server killed with -9 leaves its papermill process group running; it would go on
    appending to `results.jsonl` beside the resumed run, so it is stopped first."""
    pid_file = folder.path / PID_FILE
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if "scanbatch.warm_kernel" in cmdline:  # not a recycled pid
        log.warning("job %s: stopping the orphaned notebook run (pid %d)", folder.job_id, pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def _kernel_never_ran(notebook: Path) -> bool:
    """True when no code cell executed: the kernel failed to start (e.g. a port race)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return True
    return all(c.get("execution_count") is None for c in cells if c["cell_type"] == "code")


def _notebook_error(folder: JobFolder, log_path: Path) -> str:
    try:
        cells = json.loads(folder.notebook_path.read_text())["cells"]
        for cell in cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    return f"{out['ename']}: {out['evalue']}"
    except (OSError, ValueError, KeyError):
        pass
    try:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return lines[-1][-500:] if lines else "no output (see papermill.log in the job folder)"
