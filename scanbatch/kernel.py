"""What `notebooks/process_batch.ipynb` runs inside its kernel: the hand-off of a job to it.

The kernel never opens the job store: it reads the job folder and the catalog snapshot and
appends to `results.jsonl`; the server ingests the lines. A warm kernel is prepared before its
job (`prepare`: the expected extractor built, the catalog index loaded) and may start the job
the moment its parameters arrive, before papermill runs a cell; the notebook's `open_job` takes
that job, or opens its own. Running it and its audit trail: `scanbatch.kernel_job.BatchJob`,
the report's HTML: `scanbatch.kernel_report`. The logic lives in the package so that the
notebook stays a few readable cells."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanbatch.extractors import create_extractor, extractor_names, get_extractor_class
from scanbatch.extractors.base import snapshot_catalog
from scanbatch.jobfolder import JobFolder
from scanbatch.kernel_job import BatchJob
from scanbatch.kernel_report import warm_report
from scanbatch.notebook_parameters import (
    JOB_PARAMETERS,
    options_key,
    options_parameter,
    sample_job_dir,
)
from scanbatch.settings import Settings

if TYPE_CHECKING:
    from scanbatch.catalog import Matcher

log = logging.getLogger(__name__)

# What `prepare` built for the job this kernel expects: reused by `open_job` when the job's
# settings and extractor options are the same (a Gemini client takes ~0.1 s to build; the
# catalog index much longer).
_warmed: dict[str, Any] = {}
# The job started ahead of its notebook, from the channel `prepare` listens on: a future of
# (its key, the job), or of None when there was none. Taken by `open_job`.
_begun: dict[str, Future[tuple[tuple, BatchJob] | None]] = {}
BEGUN_WAIT = 60.0  # seconds open_job waits for a head start before going without it


def prepare(parameters: str = "{}", job_fd: int | None = None) -> None:
    """Run once in a fresh kernel before its job (the kernel already dies with its warm
    process: see warm_kernel.kernel_setup). Given the notebook parameters the job will most
    likely get (JSON), build its extractor and load the catalog snapshot's index, so that the
    job starts at once; without them, import every registered extractor. With `job_fd` (a
    socket from the warm process), a thread waits for the job's own parameters and starts it
    the moment they come, before papermill runs the notebook (whose `open_job` takes it).
    Nothing here can fail the job: a problem is logged, and the job meets it again and
    reports it in words."""
    if job_fd is not None:
        future: Future[tuple[tuple, BatchJob] | None] = Future()
        _begun["job"] = future
        threading.Thread(
            target=_await_job, args=(job_fd, future), name="job-channel", daemon=True
        ).start()
    warm_report()
    params = json.loads(parameters)
    if not params:
        for name in extractor_names():
            try:
                get_extractor_class(name)
            except Exception as exc:  # a job that chooses it fails with the same error
                log.warning("extractor %s cannot be imported: %s", name, exc)
        return
    try:
        settings = Settings.from_kernel_parameters(params)
        matcher = _job_matcher(params, settings)
        backend = create_extractor(
            settings.extractor, settings, catalog=matcher, **options_parameter(params)
        )
        backend.warm()
        _warmed.update(key=(settings, options_key(params), matcher), backend=backend)
    except Exception as exc:
        log.warning("warm-up for the expected job failed: %s", exc)


def _await_job(fd: int, future: Future[tuple[tuple, BatchJob] | None]) -> None:
    """The job's parameters from the warm process (a JSON line on our end of a socket pair;
    end of file: it had no job for us); its items started, the warm process is told so and
    runs the notebook."""
    with socket.socket(fileno=fd) as channel:
        with channel.makefile("rb") as reader:
            line = reader.readline()
        if not line.strip():
            future.set_result(None)
            return
        try:
            _start(line.decode(), future)
        finally:
            with contextlib.suppress(OSError):  # it stopped waiting: the notebook runs anyway
                channel.sendall(b"begun\n")


def _start(parameters: str, future: Future[tuple[tuple, BatchJob] | None]) -> None:
    if not future.set_running_or_notify_cancel():
        return  # open_job stopped waiting: it opens the job itself
    try:
        params = json.loads(parameters)
        key = _job_key(params)
        job = _open_job(params)
        job.start()
    except Exception as exc:
        log.warning("the job could not be started ahead of its notebook: %s", exc)
        future.set_result(None)
        return
    future.set_result((key, job))


def _job_key(parameters: Mapping[str, Any]) -> tuple:
    return (
        Settings.from_kernel_parameters(dict(parameters)),
        options_key(parameters),
        *(parameters.get(name) for name in JOB_PARAMETERS),
    )


def open_job(parameters: Mapping[str, Any]) -> BatchJob:
    """The job described by the notebook's parameters (every one, by name): settings validated,
    the extractor built (a bad option or a missing key fails here, before any item), the catalog
    snapshot loaded. The job started ahead of the notebook, if its parameters are these."""
    future = _begun.pop("job", None)
    if future is not None:
        try:
            begun = future.result(timeout=BEGUN_WAIT)
        except TimeoutError:
            # Cancelled if it has not begun; if it has, it finishes before the job opens again.
            begun = None if future.cancel() else future.result()
        if begun is not None:
            key, job = begun
            if key == _job_key(parameters):
                return job
            # Not this job after all: its items finish first, so that none runs twice.
            job.process_quietly()
    return _open_job(parameters)


def _open_job(parameters: Mapping[str, Any]) -> BatchJob:
    settings = Settings.from_kernel_parameters(dict(parameters))
    options = options_parameter(parameters)
    # Without a job (the notebook opened on its own), one sample record in a temporary folder.
    folder = JobFolder(Path(parameters.get("job_dir") or sample_job_dir()))
    manifest = folder.read_manifest()
    # The index `prepare` built (load_matcher keeps it), unless the catalog changed since.
    matcher = _job_matcher(parameters, settings)
    # The warmed reader holds the matcher it was built with: reused only with this same one.
    # A kernel runs its jobs one after another (a group of answered backlog jobs), so the next
    # job of this kernel may have it too; never two at once.
    key = (settings, options_key(parameters), matcher)
    if _warmed.get("key") == key:
        backend = _warmed["backend"]
    else:
        backend = create_extractor(settings.extractor, settings, catalog=matcher, **options)
        _warmed.update(key=key, backend=backend)
    snapshot = Path(parameters["catalog_snapshot"]) if parameters.get("catalog_snapshot") else None
    return BatchJob(folder, manifest, settings, backend, matcher, snapshot)


def _job_matcher(parameters: Mapping[str, Any], settings: Settings) -> Matcher | None:
    """The job's catalog, from its `catalog_snapshot` parameter (none without one): what its
    records are matched against and what a reader that `reads_catalog` reads, the same one."""
    return snapshot_catalog(parameters.get("catalog_snapshot") or None, settings.match_min_score)
