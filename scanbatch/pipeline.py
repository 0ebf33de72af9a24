"""Process a job folder: extract every item not yet in `results.jsonl`, concurrently and
bounded, match it against the catalog, and append one line per finished item.

`process_item` is one record from photos in memory, also the synchronous scan's
(`POST /library/scan`), which has no folder. A failing item never stops the others: its
exception becomes that item's error message."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from scanbatch.errors import ExtractionError
from scanbatch.extractors.base import Extractor
from scanbatch.jobfolder import JobFolder
from scanbatch.models import (
    BacklogEvent,
    Extraction,
    ItemOutcome,
    ManifestItem,
    Photo,
    Status,
    Usage,
)
from scanbatch.prices import usage_cost

if TYPE_CHECKING:  # the catalog's module loads numpy and rapidfuzz: only when a job matches
    from scanbatch.catalog.match import Matcher

log = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


def process_item(
    photos: Sequence[Photo],
    index: int,
    item: ManifestItem,
    extractor: Extractor,
    matcher: Matcher | None = None,
    *,
    job: str = "",
) -> ItemOutcome:
    """Item `index` of a job (`job` names it in the log) read from `photos` and matched."""
    return _process(
        lambda: extractor.extract(list(photos), item.context), index, item, extractor, matcher, job
    )


def process_answer(
    answer: BacklogEvent,
    index: int,
    item: ManifestItem,
    extractor: Extractor,
    matcher: Matcher | None = None,
    *,
    job: str = "",
) -> ItemOutcome:
    """Item `index` of a backlog job from the batch API's answer to its request, read and
    matched as an interactive answer is; an answer that is an error fails the item alone."""

    def read() -> Extraction:
        if answer.response is None:
            raise ExtractionError(
                answer.error_message or "The batch API gave no answer for this record",
                code=answer.error_code or "backlog_no_answer",
                retryable=False,
            )
        return extractor.read_batch_answer(answer.response)

    return _process(read, index, item, extractor, matcher, job)


def _process(
    read: Callable[[], Extraction],
    index: int,
    item: ManifestItem,
    extractor: Extractor,
    matcher: Matcher | None,
    job: str,
) -> ItemOutcome:
    started = time.perf_counter()
    try:
        extraction = read()
        usage = extraction.usage or Usage(extractor=extractor.name)
        if usage.latency_ms is None and not usage.batch:  # a batch answer has no latency of its own
            usage.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        usage.cost = usage_cost(usage)
        match = matcher.match(item.context, extraction) if matcher is not None else None
        matched = match is not None and match.album_id is not None
        return ItemOutcome(
            item_index=index,
            status=Status.COMPLETED,
            extraction=extraction.fields_json(),
            matched_album_id=match.album_id if matched else None,
            match_score=match.score if matched else None,
            match_method=match.method if matched else None,
            match_note=match.note if match else None,
            usage=usage,
            finished_at=now(),
        )
    except Exception as exc:
        return item_failure(index, exc, extractor.name, started, job=job)


def item_failure(
    index: int, exc: Exception, extractor_name: str, started: float, *, job: str = ""
) -> ItemOutcome:
    """The outcome of an item that raised `exc` (`started`: its `time.perf_counter()`)."""
    if isinstance(exc, ExtractionError):
        error, code, retryable, raw = exc.message, exc.code, exc.retryable, exc.raw
    else:  # one named failure path: the item fails, the job goes on
        log.error("item %d of job %s failed", index, job, exc_info=exc)
        error, code, retryable, raw = f"{type(exc).__name__}: {exc}", "internal_error", False, None
    latency = round((time.perf_counter() - started) * 1000, 1)
    return ItemOutcome(
        item_index=index,
        status=Status.FAILED,
        error_message=error,
        error_code=code,
        retryable=retryable,
        usage=Usage(extractor=extractor_name, latency_ms=latency, raw_response=raw),
        finished_at=now(),
    )


def process_folder_item(
    folder: JobFolder,
    index: int,
    item: ManifestItem,
    extractor: Extractor,
    matcher: Matcher | None = None,
    answers: dict[int, BacklogEvent] | None = None,
) -> ItemOutcome:
    """Item `index` of the job in `folder`: its photos read from the folder, then processed;
    a photo that cannot be read fails the item alone. A backlog job's item (`answers`: the
    batch API's, by item) is read from its answer: nothing is sent."""
    if answers is not None:
        answer = answers.get(index) or BacklogEvent(
            event="answered",
            at=now(),
            batch="",
            item=index,
            error_code="backlog_no_answer",
            error_message="This record was sent in a Google batch but no answer for it was "
            "recorded: submit it again",
        )
        return process_answer(answer, index, item, extractor, matcher, job=folder.job_id)
    started = time.perf_counter()
    try:
        photos = folder.photos(index, item.photo_types)
    except Exception as exc:
        return item_failure(index, exc, extractor.name, started, job=folder.job_id)
    return process_item(photos, index, item, extractor, matcher, job=folder.job_id)


class FolderRun:
    """`process_folder`'s work, started at once (each item's photos go out while the caller
    does something else) and collected later."""

    def __init__(
        self,
        folder: JobFolder,
        extractor: Extractor,
        *,
        matcher: Matcher | None = None,
        concurrency: int = 4,
    ) -> None:
        manifest = folder.read_manifest()
        writer = folder.results_writer()
        self.todo = folder.pending()
        answers = folder.backlog_answers()

        def run(index: int) -> ItemOutcome:
            outcome = process_folder_item(
                folder, index, manifest.items[index], extractor, matcher, answers
            )
            writer.append(outcome)  # appended as soon as it finishes: a crash loses nothing done
            return outcome

        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="item")
        self._futures = [self._pool.submit(run, index) for index in self.todo]

    def outcomes(self, on_item: Callable[[ItemOutcome], None] | None = None) -> list[ItemOutcome]:
        """Wait for every item; returns the outcomes in completion order."""
        outcomes: list[ItemOutcome] = []
        with self._pool:
            for future in as_completed(self._futures):
                outcome = future.result()
                outcomes.append(outcome)
                if on_item is not None:
                    on_item(outcome)
        return outcomes


def process_folder(
    folder: JobFolder,
    extractor: Extractor,
    *,
    matcher: Matcher | None = None,
    concurrency: int = 4,
    on_item: Callable[[ItemOutcome], None] | None = None,
) -> list[ItemOutcome]:
    """Run every pending item; returns the outcomes of this run in completion order."""
    return FolderRun(folder, extractor, matcher=matcher, concurrency=concurrency).outcomes(on_item)
