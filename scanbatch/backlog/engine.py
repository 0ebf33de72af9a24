"""The backlog's engine: one thread in the server (or in `scanbatch run --backlog`) that packs
waiting backlog records of many jobs into Google batches, follows each batch to its end, and
hands every job whose records are all answered to the runner, whose notebook reads them as it
reads interactive answers.

One round (`step`):
1. **Pack**, when the oldest waiting record has waited SCANBATCH_BACKLOG_WAIT_SECONDS or
   SCANBATCH_BACKLOG_MAX_ITEMS are waiting: each record's request (the extractor's own,
   `batch_request`) is one JSONL line keyed `<jobId>/<itemIndex>`, streamed to a file under
   `data/backlog/`; a file is closed before it would pass SCANBATCH_BACKLOG_FILE_BYTES and the
   next starts. Each file is recorded as a batch (its display name is our id) with its records
   marked sent, in one transaction, before anything leaves.
2. **Submit** recorded batches: upload the file (Files API), then look the batch up by its
   display name and create it only when Google has none: a server killed between Google's
   create and our record of it finds that batch again instead of making a second.
3. **Poll** each batch when due, with backoff. SUCCEEDED: its result file is read line by
   line and matched by key (Google returns lines in any order); a line's error fails that
   record alone, or sends it again when it is worth another try. FAILED, EXPIRED, CANCELLED:
   its records are sent again, up to SCANBATCH_BACKLOG_RETRIES times, then fail with a code
   saying which. Answers are written to each job's folder (fsynced) before the store counts
   them.
4. Jobs whose every record is answered go to the runner.

A Google error worth another try (network, 429, 5xx) leaves the step where it was until the
next round; nothing is lost, since every state is in the store."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanbatch.backlog.google import BatchState, GoogleBatchError, end_reason, read_result_lines
from scanbatch.errors import ConfigError
from scanbatch.extractors import Extractor, create_extractor
from scanbatch.jobfolder import JobFolder
from scanbatch.models import BacklogEvent, Manifest
from scanbatch.private import private_dir
from scanbatch.settings import Settings
from scanbatch.store.backlog import BatchRow, ItemKey

if TYPE_CHECKING:
    from scanbatch.backlog.google import GoogleBatches
    from scanbatch.store import JobStore

log = logging.getLogger(__name__)

DISPLAY_PREFIX = "scanbatch-"
MAX_POLL_SECONDS = 600.0
# A per-line error with one of these codes is Google's passing trouble: the record goes again.
RETRYABLE_LINE_CODES = frozenset({408, 429, 500, 502, 503, 504})
FAILED_CODE = {
    BatchState.FAILED: "backlog_batch_failed",
    BatchState.EXPIRED: "backlog_batch_expired",
    BatchState.CANCELLED: "backlog_batch_cancelled",
}
# Tests stop the engine here (then kill the server) to prove a restart makes no second batch.
PAUSE_ENV = "SCANBATCH_TEST_BACKLOG_PAUSE"


def key_of(job_id: str, item_index: int) -> str:
    return f"{job_id}/{item_index}"


def parse_key(key: str) -> ItemKey | None:
    job, _, index = key.rpartition("/")
    if not job or not index.isascii() or not index.isdigit():
        return None
    return job, int(index)


def _now() -> datetime:
    return datetime.now(UTC)


class Backlog:
    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        on_ready: Callable[[list[str]], None],
        google: Callable[[Extractor], GoogleBatches] | None = None,
    ) -> None:
        """`on_ready` is given the jobs whose every record is answered (the runner's
        `submit_group`: each job's notebook reads its answers); `google` makes the Batch API
        client for an extractor's records (default: the one its `batch_client` gives)."""
        self.store = store
        self.settings = settings
        self._google_factory = google or (lambda extractor: extractor.batch_client())
        self._google: dict[str, GoogleBatches] = {}
        self.on_ready = on_ready
        self.folder = Path(settings.data_dir) / "backlog"
        self._extractors: dict[str, Extractor] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one round at a time (the thread, or a caller's step)
        self._retry_at = 0.0  # after a passing Google error, no call before this
        self._cancelled: set[str] = set()  # Google batches this engine asked to cancel
        self._swept = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="backlog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for extractor in self._extractors.values():
            extractor.close()
        for google in self._google.values():
            google.close()

    def wake(self) -> None:
        """A backlog job was posted (or cancelled): look now rather than at the next tick."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                delay = self.step()
            except Exception:  # the engine must survive any round; the store has the state
                log.exception("backlog: round failed")
                delay = 5.0
            self._wake.wait(delay)
            self._wake.clear()

    def google(self, extractor: str) -> GoogleBatches:
        """The Batch API client for records of `extractor` (its key and endpoint)."""
        if extractor not in self._google:
            self._google[extractor] = self._google_factory(self._extractor(extractor))
        return self._google[extractor]

    # -- one round ------------------------------------------------------------------------

    def step(self) -> float:
        """One round; returns the seconds until the next is due."""
        with self._lock:
            if not self._swept:
                self._sweep()
            if time.monotonic() < self._retry_at:
                return self._retry_at - time.monotonic()
            try:
                self._pack()
                for row in self.store.backlog.open_batches():
                    if self._stopping.is_set():
                        break
                    self._advance(row)
            except GoogleBatchError as exc:
                if not exc.retryable:
                    raise
                log.warning("backlog: Google answered %s; trying again shortly", exc.message)
                self._retry_at = time.monotonic() + self.settings.backlog_poll_seconds
            ready = self.store.backlog.ready_jobs()
            if ready:
                self.on_ready(ready)
            return self._next_due()

    def _sweep(self) -> None:
        """Batch files no open batch owns (a file being written when the server died, before
        its batch was recorded: its records were still waiting, and are packed again) go:
        each may be 2 GB."""
        self._swept = True
        if not self.folder.is_dir():
            return
        owned = {row.id for row in self.store.backlog.open_batches()}
        for path in self.folder.glob(f"{DISPLAY_PREFIX}*.jsonl"):
            if path.name.split(".", 1)[0] not in owned:
                log.info("backlog: removing %s (no batch was recorded for it)", path.name)
                path.unlink(missing_ok=True)

    def _next_due(self) -> float:
        now = _now()
        due = [self.settings.backlog_poll_seconds]
        for row in self.store.backlog.open_batches():
            if row.next_poll_at is None:
                return 0.0
            due.append((row.next_poll_at - now).total_seconds())
        waiting = self.store.backlog.waiting(1)
        if waiting:
            since = waiting[0].waiting_since
            due.append(
                (
                    since + timedelta(seconds=self.settings.backlog_wait_seconds) - now
                ).total_seconds()
            )
        return max(0.05, min(due))

    # -- packing ----------------------------------------------------------------------------

    def _pack(self) -> None:
        limit = self.settings.backlog_max_items
        waiting = self.store.backlog.waiting(limit)
        if not waiting:
            return
        oldest = waiting[0].waiting_since
        due = oldest + timedelta(seconds=self.settings.backlog_wait_seconds)
        if len(waiting) < limit and _now() < due:
            return
        by_extractor: dict[str, list[Any]] = defaultdict(list)
        for item in waiting:
            by_extractor[item.extractor].append(item)
        for name, items in by_extractor.items():
            self._pack_group(name, items)

    def _extractor(self, name: str) -> Extractor:
        if name not in self._extractors:
            self._extractors[name] = create_extractor(name, self.settings, catalog=None)
        return self._extractors[name]

    def _pack_group(self, name: str, items: list[Any]) -> None:
        try:
            extractor = self._extractor(name)
        except ConfigError as exc:  # the key went missing since the POST: every record says so
            self._fail_now([(i.job_id, i.item_index) for i in items], "backlog_config", exc.message)
            return
        private_dir(self.folder)
        manifests: dict[str, Manifest | None] = {}
        writer = _BatchFile(self.folder, self.settings.backlog_file_bytes)
        unreadable: dict[ItemKey, str] = {}
        for item in items:
            folder = JobFolder.for_job(self.settings.jobs_dir, item.job_id)
            if item.job_id not in manifests:
                manifests[item.job_id] = folder.read_manifest() if folder.exists() else None
            manifest = manifests[item.job_id]
            key = (item.job_id, item.item_index)
            if manifest is None:
                unreadable[key] = "The job's folder is missing: submit the batch again"
                continue
            entry = manifest.items[item.item_index]
            try:
                photos = folder.photos(item.item_index, entry.photo_types)
                request = extractor.batch_request(photos, entry.context)
            except Exception as exc:  # this record alone cannot be sent: it fails alone
                unreadable[key] = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                continue
            line = json.dumps({"key": key_of(*key), "request": request}, separators=(",", ":"))
            data = (line + "\n").encode()
            if not writer.fits(len(data)):
                self._record(writer.close(), name, extractor.batch_model())
            writer.add(key, data)
        if writer.items:
            self._record(writer.close(), name, extractor.batch_model())
        if unreadable:
            for key, message in unreadable.items():
                self._fail_now([key], "backlog_unreadable", message)

    def _record(self, packed: _Packed, extractor: str, model: str) -> None:
        """The batch's row and its records marked sent, before anything leaves; then each
        job's folder says what was sent in it."""
        self.store.backlog.pack(packed.batch_id, extractor, model, packed.items, packed.size)
        attempts = {}
        for job_id, index, attempt in self.store.backlog.items_of(packed.batch_id):
            attempts[(job_id, index)] = attempt
        at = _now()
        for job_id, indexes in _by_job(packed.items).items():
            JobFolder.for_job(self.settings.jobs_dir, job_id).append_backlog(
                [
                    BacklogEvent(
                        event="sent",
                        at=at,
                        batch=packed.batch_id,
                        model=model,
                        items=indexes,
                        attempt=max(attempts.get((job_id, i), 1) for i in indexes),
                    )
                ]
            )
        log.info(
            "backlog: packed %d record(s) into %s (%.1f MB)",
            len(packed.items),
            packed.batch_id,
            packed.size / 1e6,
        )

    # -- following a batch ----------------------------------------------------------------

    def _advance(self, row: BatchRow) -> None:
        if row.state in ("packed", "uploaded"):
            self._submit(row, wanted=not self._unwanted(row))
            return
        if row.state in ("pending", "running"):
            if self._unwanted(row):
                self._cancel(row)
            if row.next_poll_at is not None and row.next_poll_at > _now():
                return
            self._poll(row)
            return
        # Finished at Google, not yet settled here (the server stopped in between).
        if row.state == BatchState.SUCCEEDED.value and row.google_name is not None:
            self._ingest(row, self.google(row.extractor).get(row.google_name))
        else:
            self._settle(row, BatchState(row.state), row.error)

    def _path(self, row: BatchRow) -> Path:
        return self.folder / f"{row.id}.jsonl"

    def _submit(self, row: BatchRow, *, wanted: bool = True) -> None:
        """Upload and create the batch (`wanted` false: its jobs were cancelled meanwhile, so
        nothing is sent; a batch a create may already have made is looked up and followed,
        to be cancelled)."""
        if not wanted and row.state == "packed":
            self.store.backlog.settle(row.id, [], [])
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(row))
            return
        google = self.google(row.extractor)
        file_name = row.file_name
        # Only a batch left `uploaded` by an earlier round may have been created already (a
        # create whose answer, or whose record, a crash lost): that one is looked up first.
        # Looking up lists every batch of the key, so a fresh upload skips it.
        created_maybe = row.state == "uploaded"
        if row.state == "packed":
            path = self._path(row)
            if not path.exists():  # lost with the disk: its records wait for the next batch
                log.warning("backlog: %s has no input file; its records are sent again", row.id)
                self._again_all(row)
                return
            file_name = google.upload(path, display_name=row.id)
            self.store.backlog.uploaded(row.id, file_name)
        remote = google.find(row.id) if created_maybe else None
        if remote is None and not wanted:
            self.store.backlog.settle(row.id, [], [])
            return
        if remote is None:
            assert file_name is not None
            remote = google.create(row.model, file_name, row.id)
            _pause("created")
        self.store.backlog.submitted(row.id, remote.name, remote.state.value, self._poll_at(0))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(row))
        log.info("backlog: %s is Google batch %s", row.id, remote.name)

    def _poll_at(self, polls: int) -> datetime:
        base = self.settings.backlog_poll_seconds
        return _now() + timedelta(seconds=min(base * 2 ** min(polls, 20), MAX_POLL_SECONDS))

    def _poll(self, row: BatchRow) -> None:
        assert row.google_name is not None
        remote = self.google(row.extractor).get(row.google_name)
        state = remote.state.value
        if not remote.state.finished:
            polls = row.polls + 1 if state == row.state else 0
            self.store.backlog.polled(row.id, state, self._poll_at(polls))
            return
        self.store.backlog.polled(row.id, state, None, remote.error)
        if remote.state == BatchState.SUCCEEDED:
            self._ingest(row, remote)
        else:
            self._settle(row, remote.state, remote.error)

    def _ingest(self, row: BatchRow, remote: Any) -> None:
        sent = {key_of(j, i): (j, i, a) for j, i, a in self.store.backlog.items_of(row.id)}
        path = self.folder / f"{row.id}.results.jsonl"
        private_dir(self.folder)
        self.google(row.extractor).download_results(remote, path)
        verdicts = _Verdicts(row, self.settings.backlog_retries)
        for line in read_result_lines(path):
            found = sent.pop(line.key, None)
            if found is None:  # not ours, or answered twice: the first answer counts
                log.warning("backlog: %s answered an unknown key %r", row.id, line.key)
                continue
            job_id, index, attempts = found
            if line.response is not None:
                verdicts.answer(job_id, index, line.response)
                continue
            code, detail, message = line.error_code, line.error_detail, line.error_message
            if code in RETRYABLE_LINE_CODES:
                verdicts.again_or_fail(
                    job_id, index, attempts, detail, "backlog_line_error", message
                )
            else:
                verdicts.fail(job_id, index, "backlog_line_error", message)
        for job_id, index, attempts in sent.values():  # sent, never answered
            message = (
                f"Google's batch {row.google_name} returned no answer for this record "
                f"({attempts} attempts)"
            )
            verdicts.again_or_fail(
                job_id, index, attempts, "no answer in the results", "backlog_no_answer", message
            )
        self._conclude(row, verdicts)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _settle(self, row: BatchRow, state: BatchState, error: str | None) -> None:
        """A batch that ended without results: its records go again, or fail with its code."""
        items = self.store.backlog.items_of(row.id)
        why = end_reason(state, error)
        verdicts = _Verdicts(row, self.settings.backlog_retries)
        for job_id, index, attempts in items:
            message = (
                f"Google batch {row.google_name} {why}; the record was sent {attempts} times "
                f"(SCANBATCH_BACKLOG_RETRIES {self.settings.backlog_retries}): submit it again"
            )
            code = FAILED_CODE.get(state, "backlog_batch_failed")
            verdicts.again_or_fail(job_id, index, attempts, why, code, message)
        if items:
            log.warning("backlog: %s %s: %d record(s)", row.google_name, why, len(items))
        self._conclude(row, verdicts)

    def _conclude(self, row: BatchRow, verdicts: _Verdicts) -> None:
        """Each job's folder told first (fsynced), then the store: no answer it counts is lost."""
        self._write_events(verdicts.events)
        self.store.backlog.settle(row.id, verdicts.answered, verdicts.again)
        self._forget_remote(row)

    def _again_all(self, row: BatchRow) -> None:
        keys = [(j, i) for j, i, _ in self.store.backlog.items_of(row.id)]
        self.store.backlog.settle(row.id, [], keys)

    def _fail_now(self, keys: list[ItemKey], code: str, message: str) -> None:
        """Records that cannot be sent at all: answered with their error at once."""
        at = _now()
        events: dict[str, list[BacklogEvent]] = defaultdict(list)
        for job_id, index in keys:
            events[job_id].append(
                BacklogEvent(
                    event="answered",
                    at=at,
                    batch="",
                    item=index,
                    error_code=code,
                    error_message=message,
                )
            )
        self._write_events(events)
        self.store.backlog.answer_now(keys)

    def _write_events(self, events: dict[str, list[BacklogEvent]]) -> None:
        for job_id, job_events in events.items():
            folder = JobFolder.for_job(self.settings.jobs_dir, job_id)
            if folder.exists():  # a deleted job's answers have nowhere to go
                folder.append_backlog(job_events)

    def _forget_remote(self, row: BatchRow) -> None:
        """A settled batch nobody's records are in any more (their jobs deleted): gone from
        Google too. Otherwise Google keeps it for its own 48 h."""
        if row.google_name and not self.store.backlog.has_items(row.id):
            try:
                self.google(row.extractor).delete(row.google_name)
            except GoogleBatchError as exc:
                log.warning("backlog: could not delete %s: %s", row.google_name, exc.message)

    # -- cancel and delete ------------------------------------------------------------------

    def release(self) -> None:
        """A job was cancelled or deleted: its Google batches that hold no other unfinished
        record are cancelled at Google, in the engine's next round (at once: it is woken)."""
        self.wake()

    def _unwanted(self, row: BatchRow) -> bool:
        """No record in the batch is wanted any more (their jobs cancelled or deleted)."""
        return not self.store.backlog.live_items(row.id)

    def _cancel(self, row: BatchRow) -> None:
        assert row.google_name is not None
        if row.google_name in self._cancelled:
            return
        try:
            self.google(row.extractor).cancel(row.google_name)
            self._cancelled.add(row.google_name)
            log.info("backlog: cancelled %s (no record in it is wanted)", row.google_name)
        except GoogleBatchError as exc:
            log.warning("backlog: could not cancel %s: %s", row.google_name, exc.message)


class _Verdicts:
    """What a finished batch did to each of its records: answered (an answer, or an error
    that ends the record) or sent again; and the events each job's folder gets."""

    def __init__(self, row: BatchRow, retries: int) -> None:
        self.row = row
        self.retries = retries
        self.at = _now()
        self.answered: list[ItemKey] = []
        self.again: list[ItemKey] = []
        self.events: dict[str, list[BacklogEvent]] = defaultdict(list)

    def _event(self, job_id: str, index: int, **fields: Any) -> None:
        self.events[job_id].append(
            BacklogEvent(
                at=self.at,
                batch=self.row.id,
                google_batch=self.row.google_name,
                item=index,
                **fields,
            )
        )

    def answer(self, job_id: str, index: int, response: dict[str, Any]) -> None:
        self._event(job_id, index, event="answered", response=response)
        self.answered.append((job_id, index))

    def fail(self, job_id: str, index: int, code: str, message: str) -> None:
        self._event(job_id, index, event="answered", error_code=code, error_message=message)
        self.answered.append((job_id, index))

    def again_or_fail(
        self, job_id: str, index: int, attempts: int, why: str, code: str, message: str
    ) -> None:
        """Sent again while it has tries left (SCANBATCH_BACKLOG_RETRIES), else failed."""
        if attempts <= self.retries:
            self._event(job_id, index, event="again", error_message=why)
            self.again.append((job_id, index))
        else:
            self.fail(job_id, index, code, message)


class _Packed:
    def __init__(self, batch_id: str, items: list[ItemKey], size: int) -> None:
        self.batch_id = batch_id
        self.items = items
        self.size = size


class _BatchFile:
    """JSONL lines streamed to `<folder>/<batch id>.jsonl`, one file per batch, each kept under
    `max_bytes`: only the line being written is in memory."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._fh: Any = None
        self.items: list[ItemKey] = []
        self.size = 0
        self.batch_id = ""

    def fits(self, size: int) -> bool:
        """Whether a line of `size` bytes fits in this file (always, in an empty one)."""
        return self._fh is None or self.size + size <= self.max_bytes

    def add(self, key: ItemKey, data: bytes) -> None:
        if self._fh is None:
            self.batch_id = f"{DISPLAY_PREFIX}{uuid.uuid4()}"
            self._fh = open(self.folder / f"{self.batch_id}.jsonl", "wb")  # noqa: SIM115
        self._fh.write(data)
        self.items.append(key)
        self.size += len(data)

    def close(self) -> _Packed:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        packed = _Packed(self.batch_id, self.items, self.size)
        self._fh, self.items, self.size = None, [], 0
        return packed


def _by_job(items: Iterable[ItemKey]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for job_id, index in items:
        out[job_id].append(index)
    return out


def _pause(point: str) -> None:
    if os.environ.get(PAUSE_ENV) == point:
        log.warning("backlog: paused at %r for a test", point)
        time.sleep(3600)
