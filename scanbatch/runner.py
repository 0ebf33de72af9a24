"""Running jobs: every job, from the server or from `scanbatch run`, is one papermill execution
of `notebooks/process_batch.ipynb` in a warm notebook process (`scanbatch.warm_kernel`), so
every job leaves its executed notebook as its audit trail.

The server's `JobRunner` keeps a queue and a bounded pool of such processes
(`scanbatch.warm_pool`). Each runs in its own OS process group under a wall-clock limit,
because papermill has no execution timeout by default and can hang when a kernel dies. While
it runs, the runner ingests `results.jsonl` line by line, so GET shows items completing one by
one. Whatever happens to the notebook, the job ends: items it did not finish fail with a
message saying why, taken from papermill's exception as the warm process reports it."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from scanbatch.catalog_sync import CatalogSnapshot
from scanbatch.errors import NotFound
from scanbatch.jobfolder import JobFolder
from scanbatch.models import ItemOutcome, JobMode, JobView
from scanbatch.names import LOCAL_RUN_USER
from scanbatch.notebook_parameters import job_parameters
from scanbatch.settings import PROCESSING_NOTEBOOK, Settings
from scanbatch.store import JobStore
from scanbatch.warm_pool import WarmPool, give, kill, read_event, release

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
# Answered backlog jobs one kernel runs in a row (`submit_group`): enough to spread a start's
# cost thin, few enough that a group's kernel does not live for hours.
GROUP_SIZE = 25

OnOutcome = Callable[[ItemOutcome], None]


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        *,
        poll_interval: float = 0.1,
        keep_warm: bool = True,
    ) -> None:
        self.store = store
        self.settings = settings
        self.poll_interval = poll_interval
        self.snapshot = CatalogSnapshot(store, settings.catalog_snapshot)
        self.pool = WarmPool(settings, keep_warm=keep_warm, warm_parameters=self._warm_parameters)
        # A job id, or a group of answered backlog jobs to run one after another on one kernel.
        self._queue: queue.Queue[str | tuple[str, ...] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancelled: set[str] = set()
        self._unsaved: set[str] = set()  # finished jobs queued to complete their notebook
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
        """Stop taking jobs and kill running kernels; their jobs resume on the next start. A
        job already answered (all its items in) keeps its kernel until its notebook is saved
        (its report: a fraction of a second), for its audit trail."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        with self._lock:
            running = list(self._procs.items())
        procs = [proc for job, proc in running if not self._answered(job)]
        for proc in procs:
            kill(proc)
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
        self._complete_notebooks()
        return resumed

    def _complete_notebooks(self) -> None:
        """Finished jobs whose notebook a killed server never saved (killed between the last
        result, which finishes the job, and the save): their notebook runs again, to leave the
        job's audit trail. Every item is in `results.jsonl`, so nothing is extracted again."""
        unsaved = []
        for folder in JobFolder.left_running(self.settings.jobs_dir):
            _kill_orphan(folder)
            if not self._answered(folder.job_id) or folder.notebook_saved():
                continue
            with self._lock:
                self._unsaved.add(folder.job_id)
            self.submit(folder.job_id)
            unsaved.append(folder.job_id)
        if unsaved:
            log.info(
                "completing the notebook of %d finished job(s) left unsaved: %s",
                len(unsaved),
                ", ".join(unsaved),
            )

    def submit(self, job_id: str) -> None:
        """Queue the job, unless it is queued or running already: two runs of one job would
        send its photos twice."""
        with self._lock:
            if job_id in self._finished:
                return
            self._finished[job_id] = threading.Event()
        self._queue.put(job_id)

    def submit_group(self, job_ids: list[str]) -> None:
        """Queue answered backlog jobs: their notebooks send nothing (the answers are in their
        folders), so each worker runs its share one after another on one kernel, which saves
        a kernel start (most of the CPU such a job costs) per job. Jobs queued or running
        already are left out, as in `submit`."""
        with self._lock:
            fresh = [job for job in dict.fromkeys(job_ids) if job not in self._finished]
            for job in fresh:
                self._finished[job] = threading.Event()
        if not fresh:
            return
        size = min(GROUP_SIZE, -(-len(fresh) // self.settings.runner_workers))
        for start in range(0, len(fresh), size):
            self._queue.put(tuple(fresh[start : start + size]))

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
            kill(proc)
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
            item = self._queue.get()
            if item is None or self._stopping.is_set():
                return
            group = (item,) if isinstance(item, str) else item
            proc = None
            for n, job_id in enumerate(group):
                try:
                    last = n == len(group) - 1 or self._stopping.is_set()
                    proc = self._process(job_id, None, proc, last=last)
                except Exception:  # the runner must survive any job
                    log.exception("job %s: runner error", job_id)
                    proc = None
                    try:
                        self.store.finish_job(job_id, "Internal error while running the job")
                    except Exception:
                        log.exception("job %s: could not finish", job_id)
                finally:
                    with self._lock:
                        event = self._finished.pop(job_id, None)
                        self._cancelled.discard(job_id)
                        self._unsaved.discard(job_id)
                    if event is not None:
                        event.set()
            if proc is not None:  # the group ended early (stopping): its kernel goes
                release(proc)
                proc.wait()

    def process(self, job_id: str, on_outcome: OnOutcome | None = None) -> None:
        """Run the job's notebook to the end in this thread and finish the job in the store;
        `on_outcome` sees each item's outcome as it is ingested."""
        self._process(job_id, on_outcome, None, last=True)

    def _process(
        self,
        job_id: str,
        on_outcome: OnOutcome | None,
        proc: subprocess.Popen | None,
        *,
        last: bool,
    ) -> subprocess.Popen | None:
        """`process`, on `proc` (a process whose kernel ran the group's previous job, waiting
        for the next) or a warm one from the pool. Returns the process, waiting for another
        job, when `last` is false and its run ended well; else it has been let go."""
        with self._lock:
            unsaved = job_id in self._unsaved
        if not unsaved and not self.store.unfinished_items(job_id):  # cancelled or deleted
            return proc if not last else self._let_go(proc)
        folder = self._folder(job_id)
        snapshot = self.snapshot.ensure()
        run = self._execute(job_id, folder, snapshot, on_outcome, proc)
        keep = False
        try:
            if self._answered(job_id):  # every item was in before the notebook ended
                if run.failure:
                    log.warning(
                        "job %s: its notebook failed after every item was in: %s",
                        job_id,
                        run.failure,
                    )
                keep = not last and run.failure is None and run.proc is not None
                return run.proc if keep else None
            if self._stopping.is_set() and job_id not in self._cancelled:
                return (
                    None  # server shutting down: the job stays unfinished; the next start resumes
                )
            self._ingest(job_id, folder, run.offset, on_outcome)
            code = "notebook_failed"
            message = run.failure
            if job_id in self._cancelled:
                message = code = CANCELLED
            self.store.finish_job(job_id, message, code)
            return None
        finally:
            # The job is answered; the notebook process may still be shutting its kernel down.
            # This worker waits for it, so no more kernels run than there are workers.
            if keep:
                run.hand_on()
            else:
                run.reap()

    def _let_go(self, proc: subprocess.Popen | None) -> None:
        if proc is not None:
            release(proc)
            proc.wait()

    def _parameters(self, job_id: str, folder: JobFolder, snapshot: Path | None) -> dict:
        return job_parameters(
            self.settings,
            extractor=self.store.job_extractor(job_id),
            job_dir=folder.path,
            catalog_snapshot=snapshot,
        )

    def _warm_parameters(self) -> dict:
        """What the next job will most likely be given (the settings and today's catalog
        snapshot, exported now if the catalog changed), for the warm-up only."""
        return job_parameters(self.settings, catalog_snapshot=self.snapshot.ensure())

    def _execute(
        self,
        job_id: str,
        folder: JobFolder,
        snapshot: Path | None,
        on_outcome: OnOutcome | None,
        proc: subprocess.Popen | None = None,
    ) -> Run:
        """One papermill run in a warm process (`proc`, whose kernel ran the previous job of
        a group, else one from the pool), until the process reports how the run ended (the
        executed notebook is saved by then) or it is stopped."""
        job = {
            "input": str(PROCESSING_NOTEBOOK),
            "output": str(folder.notebook_path.resolve()),
            "parameters": self._parameters(job_id, folder, snapshot),
            "cwd": str(folder.path.resolve()),
            "log": str(folder.notebook_log_path.resolve()),
        }
        failure = None
        if proc is not None:
            try:
                give(proc, job)
            except (BrokenPipeError, ValueError):  # it died since its last job: a fresh one
                proc.wait()
                proc = None
        if proc is None:
            proc, failure = self.pool.take_with(job)
        # Marked once the kernel has the job (its photos may be on their way already): this
        # write is not on the path to the first request.
        self.store.mark_processing(job_id)
        if proc is None:
            return Run(None, folder, 0, f"Could not start a notebook kernel: {failure}")
        folder.pid_path.write_text(str(proc.pid))
        with self._lock:
            self._procs[job_id] = proc
        run = Run(proc, folder, 0)
        deadline = time.monotonic() + self.settings.notebook_timeout
        timed_out = False
        try:
            while True:
                # The last result finishes the job in the store (what is left of the notebook
                # is its report, which cannot change an item); the worker still waits for the
                # notebook: it is the job's audit trail.
                run.offset = self._ingest(job_id, folder, run.offset, on_outcome)
                if run.ended.is_set():
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                if job_id in self._cancelled or (
                    self._stopping.is_set() and not self._answered(job_id)
                ):
                    break
                # Wakes at each result line and when the run ends; the interval only bounds
                # how late a cancel or the time limit is seen (and results where inotify is
                # missing).
                run.wait(self.poll_interval)
        finally:
            if not run.ended.is_set():  # stopped early, or this thread was interrupted
                kill(proc)
            with self._lock:
                self._procs.pop(job_id, None)
        run.offset = self._ingest(job_id, folder, run.offset, on_outcome)
        if timed_out:
            run.failure = (
                f"Processing notebook exceeded SCANBATCH_NOTEBOOK_TIMEOUT "
                f"({self.settings.notebook_timeout:g} s) and was stopped"
            )
            return run
        run.ended.wait()  # killed: its pipe closes at once
        event = run.last_event
        if event.get("event") == "done":
            return run
        if "error" in event:
            run.failure = f"Processing notebook failed: {event['error']}"
            return run
        run.failure = (
            f"The notebook process exited (code {proc.wait()}) without a result; see "
            f"{folder.notebook_log_path.name} in the job folder"
        )
        return run

    def _answered(self, job_id: str) -> bool:
        """The job is finished in the store (its last result is in), whatever its notebook
        is still doing. Asked of the store, which every poll reads: no window in which an app
        has its answer and a stopping server thinks the job unfinished."""
        try:
            return self.store.get_job(job_id).status.finished
        except NotFound:
            return False

    def _ingest(
        self, job_id: str, folder: JobFolder, offset: int, on_outcome: OnOutcome | None = None
    ) -> int:
        outcomes, offset = folder.new_outcomes(offset)
        if outcomes:
            self.store.record_outcomes(job_id, outcomes)
            if on_outcome is not None:
                for outcome in outcomes:
                    on_outcome(outcome)
        return offset


class Run:
    """One notebook process running one job. Two threads wake the runner: one reads the events
    the process reports on its stdout, so the runner learns that the run ended the moment the
    process says so rather than when it exits (shutting its kernel down takes another ~0.5 s);
    one watches the job folder (inotify), so each result is ingested as its line is written
    rather than at the next poll."""

    def __init__(
        self,
        proc: subprocess.Popen | None,
        folder: JobFolder,
        offset: int,
        failure: str | None = None,
    ) -> None:
        self.proc = proc
        self.folder = folder
        self.offset = offset
        self.failure = failure
        self.last_event: dict = {}
        self.ended = threading.Event()
        self.wake = threading.Event()  # something to look at: a result line, or the end
        if proc is None:
            self.ended.set()
            return
        threading.Thread(target=self._read, name="run-events", daemon=True).start()
        threading.Thread(target=self._watch, name="run-results", daemon=True).start()

    def _read(self) -> None:
        while event := read_event(self.proc):
            self.last_event = event
            if event.get("event") in ("done", "failed"):
                break  # this run's last word: what follows is the next job's
        self._end()  # its end, or the end of the pipe: the process is gone

    def _end(self) -> None:
        self.ended.set()
        self.wake.set()

    def _watch(self) -> None:
        try:
            from inotify_simple import INotify, flags

            inotify = INotify()
            # The folder, not the file: results.jsonl appears with the first finished item.
            inotify.add_watch(self.folder.path, flags.MODIFY | flags.CREATE)
        except (ImportError, OSError) as exc:  # not Linux, or out of watches: the poll stays
            log.debug("results are polled, not watched: %s", exc)
            return
        with inotify:
            while not self.ended.is_set():
                events = inotify.read(timeout=500)
                if any(e.name == self.folder.results_path.name for e in events):
                    self.wake.set()

    def wait(self, timeout: float) -> None:
        """Until a result line is written, the run ends, or `timeout` passes."""
        self.wake.wait(timeout)
        self.wake.clear()

    def reap(self) -> None:
        """Tell the process no job follows, wait for it to exit, then forget its pid."""
        if self.proc is not None:
            release(self.proc)
            self.proc.wait()
            self.folder.pid_path.unlink(missing_ok=True)

    def hand_on(self) -> None:
        """The process stays for the group's next job: this job's folder forgets its pid."""
        self.folder.pid_path.unlink(missing_ok=True)


def create_local_job(
    store: JobStore,
    settings: Settings,
    manifest_text: str,
    image_paths: list[Path],
    *,
    extractor_name: str | None = None,
    user_id: str = LOCAL_RUN_USER,
    mode: JobMode = JobMode.INTERACTIVE,
) -> tuple[str, int]:
    """A job from files on disk (`scanbatch run`), validated and created exactly as the
    server would from an upload: (its id, its record count)."""
    from scanbatch.catalog_sync import seed_catalog_if_empty
    from scanbatch.extractors.base import check_extractor
    from scanbatch.submit import create_job_from_files

    name = extractor_name or settings.extractor
    check_extractor(name, settings)  # a missing key or a bad option fails here, before any work
    seed_catalog_if_empty(store, settings.seed_catalog)  # as the server does: matching works
    job_id, manifest = create_job_from_files(
        store, settings.jobs_dir, user_id, manifest_text, image_paths, extractor=name, mode=mode
    )
    return job_id, len(manifest.items)


def process_local_job(
    store: JobStore, settings: Settings, job_id: str, on_item: OnOutcome | None = None
) -> JobView:
    """Process a local job exactly as the server would: execute the processing notebook on
    it and finish it; returns the job's view. The executed notebook is in the job's folder."""
    runner = JobRunner(store, settings, keep_warm=False)
    try:
        runner.process(job_id, on_item)
    finally:
        runner.pool.close()
    return store.get_job(job_id)


def wait_for_backlog(
    store: JobStore,
    settings: Settings,
    job_ids: list[str],
    on_wait: Callable[[JobView], None] | None = None,
) -> None:
    """Until no record of `job_ids` waits for a Google batch: this process packs them (all in
    one batch where they fit, since nothing else is coming to share it) and follows the batch
    as the server's engine does. Interrupted, the jobs stay in the data folder as the server
    leaves them: `scanbatch serve` finishes them."""
    from scanbatch.backlog.engine import Backlog

    waiting = [job for job in job_ids if store.backlog.is_waiting(job)]
    if not waiting:
        return
    local = settings.model_copy(update={"backlog_wait_seconds": 0})
    engine = Backlog(store, local, on_ready=lambda job_ids: None)
    try:
        while waiting:
            delay = engine.step()
            if on_wait is not None:
                for job in waiting:
                    on_wait(store.get_job(job))
            waiting = [job for job in waiting if store.backlog.is_waiting(job)]
            if waiting:
                time.sleep(delay)
    finally:
        engine.stop()


def _kill_orphan(folder: JobFolder) -> None:
    """A notebook process that outlived its server (its parent-death signal should prevent
    that) would go on appending to `results.jsonl` beside the resumed run: stop it first."""
    pid_file = folder.pid_path
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except FileNotFoundError:  # no pid file, or no such process any more
        pid_file.unlink(missing_ok=True)
        return
    except ValueError:
        log.warning("job %s: ignoring an unreadable %s", folder.job_id, pid_file.name)
        pid_file.unlink(missing_ok=True)
        return
    if "scanbatch.warm_kernel" in cmdline:  # not a recycled pid
        log.warning("job %s: stopping the orphaned notebook run (pid %d)", folder.job_id, pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
