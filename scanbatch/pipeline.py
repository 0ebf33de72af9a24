"""Process a job folder: extract every item not yet in `results.jsonl`, concurrently and
bounded, match it against the catalog, and append one line per finished item.

A failing item never stops the others: its exception becomes that item's error message."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from typing import Protocol

from scanbatch.errors import ExtractionError
from scanbatch.extractors.base import Extractor
from scanbatch.jobfolder import JobFolder, ResultsWriter, iter_results
from scanbatch.models import (
    CatalogMatch,
    Extraction,
    ItemOutcome,
    ManifestItem,
    ScanContext,
    Status,
    Usage,
)

log = logging.getLogger(__name__)


class Matcher(Protocol):
    def match(self, context: ScanContext | None, extraction: Extraction) -> CatalogMatch | None:
        """The catalog album this record is, or None when nothing is close enough."""


def now() -> datetime:
    return datetime.now(UTC)


def process_item(
    folder: JobFolder,
    index: int,
    item: ManifestItem,
    extractor: Extractor,
    matcher: Matcher | None = None,
) -> ItemOutcome:
    started = time.perf_counter()
    try:
        photos = folder.photos(index, item.photo_types)
        extraction = extractor.extract(photos, item.context)
        usage = extraction.usage or Usage(extractor=extractor.name)
        if usage.latency_ms is None:
            usage.latency_ms = round((time.perf_counter() - started) * 1000, 1)
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
    except ExtractionError as exc:
        error, code, retryable, raw = exc.message, exc.code, exc.retryable, exc.raw
    except Exception as exc:  # one named failure path: the item fails, the job goes on
        log.exception("item %d of job %s failed", index, folder.job_id)
        error, code, retryable, raw = f"{type(exc).__name__}: {exc}", "internal_error", False, None
    latency = round((time.perf_counter() - started) * 1000, 1)
    return ItemOutcome(
        item_index=index,
        status=Status.FAILED,
        error_message=error,
        error_code=code,
        retryable=retryable,
        usage=Usage(extractor=extractor.name, latency_ms=latency, raw_response=raw),
        finished_at=now(),
    )


def pending_items(folder: JobFolder) -> list[int]:
    """Item indexes of the job that have no line in `results.jsonl` yet."""
    done = {o.item_index for o in iter_results(folder.results_path)}
    return [i for i in range(len(folder.read_manifest().items)) if i not in done]


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
        writer = ResultsWriter(folder.results_path)
        self.todo = pending_items(folder)

        def run(index: int) -> ItemOutcome:
            outcome = process_item(folder, index, manifest.items[index], extractor, matcher)
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
