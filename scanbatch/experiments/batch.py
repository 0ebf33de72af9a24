"""A variant with `"mode": "batch"`: its records go to Google's Batch API in one batch, at half
the price, instead of one request each.

1. Records the cache can answer are recorded at once, as in the interactive mode (the cache
   key is the request's, so an answer cached by either mode serves both).
2. The others' requests (the extractor's own `batch_request`) are streamed, one JSONL line at a
   time, to `<run>/batch-<n>.jsonl`, each keyed `<repeat>/<itemIndex>`.
3. The file is uploaded and one batch created, named `scanbatch-exp-<run>-<n>` (the variant's
   position), then asked how it stands with backoff from `poll_seconds`
   (SCANBATCH_BACKLOG_POLL_SECONDS by default) up to 10 minutes, its progress told through the
   run's `on_notice`.
4. When it has SUCCEEDED its results are downloaded and read line by line and matched by key,
   never by position (Google returns them in any order): each answer is read by the
   extractor's `read_batch_answer`, matched against the catalog, cached and recorded. A line's
   error fails that record alone (`backlog_line_error`); a batch that FAILED, EXPIRED or was
   CANCELLED fails its records with a code saying which (`backlog_batch_failed`,
   `backlog_batch_expired`, `backlog_batch_cancelled`; what a cancelled batch answered before
   it stopped counts), and a record the results leave out fails with `backlog_no_answer`.
   The input and result files are then deleted at Google (it would keep them 48 hours).

Nothing is sent again: an experiment is re-run (the cache keeps what was answered), unlike the
server's backlog, which re-submits.

An interrupted run (Ctrl-C, the notebook's stop) cancels its batch at Google when it can. A
run killed outright leaves its batch at Google, which runs it to its end and bills it; its
answers are not read into any run (Google deletes the batch after 48 hours). That is
accepted: a run does not resume."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanbatch.backlog.engine import FAILED_CODE, MAX_POLL_SECONDS
from scanbatch.backlog.google import (
    BatchState,
    GoogleBatchError,
    RemoteBatch,
    end_reason,
    read_result_lines,
)
from scanbatch.errors import ExtractionError
from scanbatch.experiments.cache import DiskCache
from scanbatch.experiments.dataset import DatasetItem
from scanbatch.experiments.execute import (
    Prepared,
    base_record,
    cached_answer,
    completed_record,
    failed_record,
    item_cache_key,
    usage_of,
)
from scanbatch.experiments.records import utc_now

if TYPE_CHECKING:
    from scanbatch.backlog.google import GoogleBatches

log = logging.getLogger(__name__)

DISPLAY_PREFIX = "scanbatch-exp-"
# How often, at most, a batch that has not changed state is reported while it runs.
NOTICE_EVERY_SECONDS = 60.0

Emit = Callable[[dict[str, Any]], None]


def display_name(run: str, position: int) -> str:
    return f"{DISPLAY_PREFIX}{run}-{position}"


def line_key(repeat: int, item_index: int) -> str:
    return f"{repeat}/{item_index}"


@dataclass
class _Waiting:
    item: DatasetItem
    record: dict[str, Any]  # the record's first fields (variant, repeat, item, cache key)


class BatchVariantRun:
    """One batch variant of one run. `run` emits exactly one record per (repeat, item), from
    the cache, from the batch's results, or as that record's error; `stop` (set by the run when
    it is interrupted) ends the wait and cancels the batch."""

    def __init__(
        self,
        prepared: Prepared,
        items: list[DatasetItem],
        repeat: int,
        *,
        cache: DiskCache,
        matcher: Any,
        folder: Path,
        run: str,
        position: int,
        poll_seconds: float,
        on_notice: Callable[[str], None],
        stop: threading.Event,
        meta: dict[str, Any],
    ) -> None:
        assert prepared.extractor is not None
        self.prepared = prepared
        self.extractor = prepared.extractor
        self.items = items
        self.repeat = repeat
        self.cache = cache
        self.matcher = matcher
        self.input_path = folder / f"batch-{position}.jsonl"
        self.results_path = folder / f"batch-{position}.results.jsonl"
        self.display_name = display_name(run, position)
        self.poll_seconds = poll_seconds
        self.on_notice = on_notice
        self.stop = stop
        self.meta = meta  # this variant's entry in run.json: the batch is recorded in it
        self.label = f"variant {prepared.variant.label} (batch)"
        self._emitted: set[tuple[int, int]] = set()
        self._emit: Emit = lambda record: None

    # -- the one entry -----------------------------------------------------------------------

    def run(self, emit: Emit) -> None:
        """Every record of this variant through `emit`; whatever goes wrong unforeseen fails
        the records not yet emitted, never the run."""
        self._emit = emit
        try:
            self._run()
        except Exception as exc:
            log.exception("%s failed", self.label)
            self._fail_rest("internal_error", f"{type(exc).__name__}: {exc}")
        finally:
            for path in (self.input_path, self.results_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _run(self) -> None:
        waiting: dict[str, _Waiting] = {}
        with self.input_path.open("w", encoding="utf-8") as fh:
            for r in range(self.repeat):
                for item in self.items:
                    key = item_cache_key(self.prepared, item, r)
                    record = base_record(self.prepared, item, r, key)
                    hit = cached_answer(self.cache, key)
                    if hit is not None:
                        extraction, usage = hit
                        self._send(
                            completed_record(
                                {**record, "cached": True}, item, extraction, usage, self.matcher
                            )
                        )
                        continue
                    record["cached"] = False
                    try:
                        request = self.extractor.batch_request(
                            [p.load() for p in item.photos], item.context
                        )
                    except ExtractionError as exc:
                        self._fail(record, exc.code, exc.message)
                        continue
                    line = line_key(r, item.index)
                    fh.write(json.dumps({"key": line, "request": request}) + "\n")
                    waiting[line] = _Waiting(item, record)
        if not waiting:
            return
        if self.stop.is_set():  # stopped while the file was written: nothing goes to Google
            self._fail_all(waiting, "backlog_batch_cancelled", "the run was stopped")
            return
        client = self.extractor.batch_client()
        try:
            self._through_google(client, waiting)
        finally:
            client.close()

    # -- at Google ---------------------------------------------------------------------------

    def _through_google(self, client: GoogleBatches, waiting: dict[str, _Waiting]) -> None:
        file_name: str | None = None
        try:
            file_name = client.upload(self.input_path, display_name=self.display_name)
            remote = client.create(self.extractor.batch_model(), file_name, self.display_name)
        except GoogleBatchError as exc:
            self._fail_all(waiting, "backlog_google_error", f"could not submit: {exc.message}")
            self._tidy(client, [file_name])
            return
        with contextlib.suppress(FileNotFoundError):
            self.input_path.unlink()  # photos, base64: Google has them now
        self._record_batch(remote, items=len(waiting), submittedAt=utc_now())
        self.on_notice(
            f"{self.label}: Google batch {remote.name} created for {len(waiting)} record(s); "
            "waiting for it (within 24 hours, usually much sooner)"
        )
        remote = self._wait(client, remote)
        if remote is None:
            return  # stopped: the batch was cancelled, the records failed
        self._record_batch(remote, finishedAt=utc_now())
        if remote.state == BatchState.SUCCEEDED:
            unanswered = ("backlog_no_answer", f"Google batch {remote.name} returned no answer")
        else:
            unanswered = (
                FAILED_CODE.get(remote.state, "backlog_batch_failed"),
                f"Google batch {remote.name} {end_reason(remote.state, remote.error)}: run the "
                "variant again",
            )
        # A batch cancelled at Google may still have answered some records: those count.
        if remote.result_file is not None:
            try:
                client.download_results(remote, self.results_path)
            except GoogleBatchError as exc:
                unanswered = ("backlog_google_error", f"could not download the results: {exc}")
            else:
                self._read_results(waiting, remote)
        self._fail_all(waiting, *unanswered)
        self._tidy(client, [file_name, remote.result_file])

    def _wait(self, client: GoogleBatches, remote: RemoteBatch) -> RemoteBatch | None:
        """The batch once it has finished; None when the run was stopped first (the batch is
        cancelled at Google, and its records fail saying so)."""
        started = time.monotonic()
        told_at, told_state = started, remote.state
        unchanged = 0
        while not remote.state.finished:
            delay = min(self.poll_seconds * 2 ** min(unchanged, 20), MAX_POLL_SECONDS)
            if self.stop.wait(delay):
                self._cancel(client, remote)
                return None
            try:
                latest = client.get(remote.name)
            except GoogleBatchError as exc:
                if not exc.retryable:
                    raise
                log.warning("%s: asking %s: %s (asked again)", self.label, remote.name, exc)
                unchanged += 1
                continue
            unchanged = unchanged + 1 if latest.state == remote.state else 0
            remote = latest
            now = time.monotonic()
            if remote.state != told_state or now - told_at >= NOTICE_EVERY_SECONDS:
                minutes = (now - started) / 60
                self.on_notice(
                    f"{self.label}: Google batch {remote.name} {remote.state.value}, "
                    f"{minutes:.0f} min"
                )
                told_at, told_state = now, remote.state
        return remote

    def _cancel(self, client: GoogleBatches, remote: RemoteBatch) -> None:
        try:
            client.cancel(remote.name)
            why = f"the run was stopped; Google batch {remote.name} was cancelled"
        except GoogleBatchError as exc:
            why = (
                f"the run was stopped; Google batch {remote.name} could not be cancelled "
                f"({exc.message}) and runs on at Google"
            )
        self._record_batch(remote, state="cancelled", finishedAt=utc_now())
        self._fail_rest("backlog_batch_cancelled", why)

    def _read_results(self, waiting: dict[str, _Waiting], remote: RemoteBatch) -> None:

        for line in read_result_lines(self.results_path):
            found = waiting.pop(line.key, None)
            if found is None:  # not ours, or answered twice: the first answer counts
                log.warning("%s: %s answered an unknown key %r", self.label, remote.name, line.key)
                continue
            record = {**found.record, "googleBatch": remote.name}
            if line.response is None:
                self._fail(record, "backlog_line_error", line.error_message)
                continue
            try:
                extraction = self.extractor.read_batch_answer(line.response)
            except ExtractionError as exc:
                self._fail(record, exc.code, exc.message)
                continue
            usage = usage_of(extraction)
            self.cache.put(
                record["cacheKey"], {"extraction": extraction.fields_json(), "usage": usage}
            )
            self._send(completed_record(record, found.item, extraction, usage, self.matcher))

    def _tidy(self, client: GoogleBatches, files: list[str | None]) -> None:
        """The input and result files deleted at Google, which would keep them 48 hours
        against the project's Files storage; a failure only costs that storage."""
        for name in files:
            if name is None:
                continue
            try:
                client.delete_file(name)
            except GoogleBatchError as exc:
                log.warning("%s: could not delete %s at Google: %s", self.label, name, exc)

    # -- records -----------------------------------------------------------------------------

    def _record_batch(self, remote: RemoteBatch, **more: Any) -> None:
        batch = self.meta.setdefault("batch", {})
        batch.update(
            {"name": remote.name, "displayName": self.display_name, "state": remote.state.value}
        )
        batch.update(more)

    def _send(self, record: dict[str, Any]) -> None:
        self._emitted.add((record["repeat"], record["itemIndex"]))
        self._emit(record)

    def _fail(self, record: dict[str, Any], code: str, message: str) -> None:

        self._send(failed_record(record, code, message))

    def _fail_all(self, waiting: dict[str, _Waiting], code: str, message: str) -> None:
        for entry in waiting.values():
            self._fail(entry.record, code, message)
        waiting.clear()

    def _fail_rest(self, code: str, message: str) -> None:

        for r in range(self.repeat):
            for item in self.items:
                if (r, item.index) not in self._emitted:
                    key = item_cache_key(self.prepared, item, r)
                    self._fail(
                        {**base_record(self.prepared, item, r, key), "cached": False}, code, message
                    )
