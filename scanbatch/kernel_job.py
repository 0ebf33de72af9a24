"""One job as its processing notebook runs it: its items started, collected with a line per
item, and its audit trail drawn (the manifest, then each item in item order with its photos,
what was sent, what came back, the catalog match and any error in words, then a summary).
`scanbatch.kernel.open_job` builds it from the notebook's parameters."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanbatch.extractors.base import Extractor
from scanbatch.jobfolder import JobFolder
from scanbatch.kernel_report import (
    HtmlReport,
    album_label,
    error_html,
    esc,
    field_text,
    fields_html,
    library_code,
    table,
    thumbnail_html,
)
from scanbatch.models import ItemOutcome, Manifest, ManifestItem, Status
from scanbatch.pipeline import FolderRun
from scanbatch.settings import Settings

if TYPE_CHECKING:
    from scanbatch.catalog.match import Matcher


class BatchJob:
    """The job in `folder`, with its extractor and catalog: `start` sends its items out,
    `process` collects them, and `manifest_table`, `items_report` and `summary` are the
    notebook's sections of its audit trail."""

    def __init__(
        self,
        folder: JobFolder,
        manifest: Manifest,
        settings: Settings,
        backend: Extractor,
        matcher: Matcher | None,
        snapshot: Path | None,
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.settings = settings
        self.backend = backend
        self.matcher = matcher
        self.snapshot = snapshot
        # Recorded when the photos were staged (read from their bytes then), not read again.
        self.mime_types = {
            index: [f.mime_type for f in folder.photo_files(index)]
            for index in range(len(manifest.items))
        }
        self.done_before = len(manifest.items) - len(folder.pending())  # a resumed job
        # A backlog job's trips through Google's Batch API: what was sent when, and answered.
        self.backlog = folder.backlog_events()
        self._run: FolderRun | None = None
        self._started = 0.0
        self._thumbs_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumb")
        self._thumbs: dict[Path, Future[str]] = {}

    def _make_thumbnails(self) -> None:
        """Start the report's thumbnails in a thread: called once the items' requests are on
        their way, so that decoding photos does not hold them back (Python runs one thread
        at a time), and made while the extractor waits on the network."""
        if not self._thumbs:
            self._thumbs.update(
                (path, self._thumbs_pool.submit(thumbnail_html, path))
                for index in range(len(self.manifest.items))
                for path in self.folder.image_paths(index)
            )

    # -- the manifest ---------------------------------------------------------------------

    def manifest_table(self) -> HtmlReport:
        rows = []
        for index, item in enumerate(self.manifest.items):
            ctx = item.context.model_dump(by_alias=True, exclude_none=True) if item.context else {}
            rows.append(
                [
                    str(index),
                    str(item.image_count),
                    ", ".join(item.photo_types),
                    ", ".join(self.mime_types[index]),
                    "; ".join(f"{k}: {v}" for k, v in ctx.items()) or "none",
                ]
            )
        done = self.done_before
        intro = (
            f"<p>Job <code>{esc(self.folder.job_id)}</code>: {len(self.manifest.items)} "
            f"item(s), {self.manifest.total_images} photo(s). Extractor "
            f"<b>{esc(self.backend.name)}</b>{esc(self._request_note())}, up to "
            f"{self.settings.item_concurrency} item(s) at once. Catalog: "
            f"{esc(self._catalog_note())}.</p>"
        )
        if done:
            intro += (
                f"<p>{done} item(s) finished in an earlier run of this job and are not "
                "extracted again.</p>"
            )
        if self.backlog:
            batches = sorted({e.google_batch for e in self.backlog if e.google_batch})
            intro += (
                "<p>A <b>backlog</b> job: the server sent its records to Google's Batch API "
                f"(at the batch price) in {', '.join(map(esc, batches)) or 'a batch'}; this "
                "notebook sends nothing, it reads the answers that came back. Each item "
                "below says when it was sent and answered.</p>"
            )
        header = ["item", "photos", "photo types", "MIME types (from the bytes)", "app context"]
        return HtmlReport(intro + table(header, rows))

    # -- processing -----------------------------------------------------------------------

    def start(self) -> None:
        """Start extracting and matching every item not yet in `results.jsonl`: the photos are
        on their way while the notebook draws the tables before `process`."""
        if self._run is None:
            self._started = time.perf_counter()
            self._run = FolderRun(
                self.folder,
                self.backend,
                matcher=self.matcher,
                concurrency=self.settings.item_concurrency,
            )

    def process(self) -> list[ItemOutcome]:
        """Wait for every item (starting them if `start` was not called), printing a line per
        item as it finishes (completion order); the report below shows them in item order."""
        self.start()
        self._make_thumbnails()
        assert self._run is not None
        started = self._started

        def progress(outcome: ItemOutcome) -> None:
            elapsed = time.perf_counter() - started
            print(f"{elapsed:6.2f} s  item {outcome.item_index}: {outcome.status.value}")

        outcomes = self._run.outcomes(progress)
        failed = sum(1 for o in outcomes if o.status == Status.FAILED)
        print(
            f"{len(outcomes)} item(s) processed in {time.perf_counter() - started:.2f} s: "
            f"{len(outcomes) - failed} completed, {failed} failed"
        )
        return outcomes

    def process_quietly(self) -> None:
        """Wait for the items started, printing nothing."""
        if self._run is not None:
            self._run.outcomes()

    def outcomes(self) -> dict[int, ItemOutcome]:
        """Every item's outcome, this run's and earlier runs' (the first line per item counts,
        as in the store)."""
        return self.folder.outcomes()

    # -- the report -----------------------------------------------------------------------

    def items_report(self) -> HtmlReport:
        outcomes = self.outcomes()
        self._make_thumbnails()
        parts = [
            self.item_html(index, item, outcomes.get(index))
            for index, item in enumerate(self.manifest.items)
        ]
        self._thumbs_pool.shutdown(wait=False)
        return HtmlReport("\n".join(parts))

    def item_html(self, index: int, item: ManifestItem, outcome: ItemOutcome | None) -> str:
        state = outcome.status.value if outcome else "not finished"
        photos = []
        for path, photo_type, mime in zip(
            self.folder.image_paths(index), item.photo_types, self.mime_types[index], strict=False
        ):
            size = path.stat().st_size
            photos.append(
                f"<td style='text-align:center'>{self._thumbs[path].result()}<br>"
                f"{esc(photo_type)} · {esc(mime)} · {max(1, round(size / 1024))} KiB</td>"
            )
        out = [f"<h3>Item {index}: {esc(state)}</h3>", f"<table><tr>{''.join(photos)}</tr></table>"]
        out.append("<h4>Sent</h4>" + self._sent_html(index, item, outcome))
        if outcome is None:
            out.append("<p>No result: the run stopped before this item finished.</p>")
            return "\n".join(out)
        if outcome.status == Status.FAILED:
            out.append("<h4>Error</h4>" + error_html(outcome))
        else:
            out.append("<h4>Read</h4>" + fields_html(outcome.extraction or {}))
            out.append("<h4>Catalog match</h4>" + self._match_html(outcome))
        raw = (outcome.usage.raw_response or "") if outcome.usage else ""
        if raw:
            out.append(
                "<details><summary>The extractor's raw answer</summary>"
                f"<pre>{esc(raw[:20000])}</pre></details>"
            )
        return "\n".join(out)

    def summary(self) -> HtmlReport:
        outcomes = self.outcomes()
        rows = []
        tokens_in = tokens_out = 0
        for index in range(len(self.manifest.items)):
            o = outcomes.get(index)
            if o is None:
                rows.append([str(index), "not finished", "", "", "", "", "", ""])
                continue
            fields = o.extraction or {}
            usage = o.usage
            tokens_in += (usage.input_tokens or 0) if usage else 0
            tokens_out += (usage.output_tokens or 0) if usage else 0
            album = self._album(o.matched_album_id)
            rows.append(
                [
                    str(index),
                    o.status.value,
                    field_text(fields.get("artistName")),
                    field_text(fields.get("albumTitle")),
                    (
                        f"#{o.matched_album_id} {album_label(album)}"
                        if o.matched_album_id is not None
                        else "none"
                    ),
                    f"{o.match_score:.2f}" if o.match_score is not None else "",
                    f"{usage.latency_ms / 1000:.2f} s" if usage and usage.latency_ms else "",
                    o.error_message or "",
                ]
            )
        finished = list(outcomes.values())
        completed = sum(1 for o in finished if o.status == Status.COMPLETED)
        matched = sum(1 for o in finished if o.matched_album_id is not None)
        text = (
            f"<p>{len(self.manifest.items)} item(s): {completed} completed, "
            f"{len(finished) - completed} failed, "
            f"{len(self.manifest.items) - len(finished)} not finished; {matched} matched to "
            f"a catalog album. Tokens: {tokens_in} in, {tokens_out} out.</p>"
        )
        header = ["item", "status", "artist", "album title", "match", "score", "time", "error"]
        return HtmlReport(text + table(header, rows))

    # -- pieces ---------------------------------------------------------------------------

    def _request_note(self) -> str:
        info = self.backend.request_info()
        return f" ({', '.join(f'{k} {v}' for k, v in info.items())})" if info else ""

    def _catalog_note(self) -> str:
        if self.matcher is None:
            return "none, so no item is matched"
        return (
            f"{len(self.matcher)} albums from the snapshot {self.snapshot}; a match needs a "
            f"score of at least {self.settings.match_min_score:g}"
        )

    def _sent_html(self, index: int, item: ManifestItem, outcome: ItemOutcome | None) -> str:
        usage = outcome.usage if outcome else None
        info = self.backend.request_info()
        rows = [["extractor", self.backend.name]]
        model = (usage.model if usage else None) or info.get("model")
        if model:
            rows.append(["model", model])
        version = (usage.prompt_version if usage else None) or info.get("prompt version")
        if version:
            rows.append(["prompt version", version])
        rows.append(["photos", ", ".join(item.photo_types)])
        rows.append(["MIME types", ", ".join(self.mime_types[index])])
        ctx = item.context.model_dump(by_alias=True, exclude_none=True) if item.context else {}
        rows.append(["app context", "; ".join(f"{k}: {v}" for k, v in ctx.items()) or "none"])
        rows += self._backlog_rows(index)
        if usage is not None:
            if usage.latency_ms is not None:
                rows.append(["time", f"{usage.latency_ms / 1000:.2f} s"])
            if usage.input_tokens is not None or usage.output_tokens is not None:
                rows.append(["tokens", f"{usage.input_tokens} in, {usage.output_tokens} out"])
            if usage.retries:
                rows.append(["retries", str(usage.retries)])
        return table(None, rows)

    def _backlog_rows(self, index: int) -> list[list[str]]:
        """When and in which Google batch the record went, and what came of each trip."""
        rows = []
        google = {e.batch: e.google_batch for e in self.backlog if e.google_batch}
        for e in self.backlog:
            when = e.at.strftime("%Y-%m-%d %H:%M:%S UTC")
            name = google.get(e.batch) or e.batch or "none"
            if e.event == "sent" and index in (e.items or []):
                rows.append(["sent", f"{when} in Google batch {name} (attempt {e.attempt})"])
            elif e.item == index and e.event == "again":
                rows.append(["sent again", f"{when}: {e.error_message}"])
            elif e.item == index and e.event == "answered":
                what = "an answer" if e.response is not None else f"error {e.error_code}"
                rows.append(["answered", f"{when}: {what}"])
        return rows

    def _album(self, album_id: int | None) -> dict[str, Any] | None:
        if album_id is None or self.matcher is None:
            return None
        return self.matcher.get(album_id)

    def _match_html(self, outcome: ItemOutcome) -> str:
        note = f"<p>{esc(outcome.match_note)}</p>" if outcome.match_note else ""
        if outcome.matched_album_id is None:
            if self.matcher is None:
                return "<p>Not matched: there was no catalog snapshot.</p>" + note
            return (
                "<p>No catalog album scored at least "
                f"{self.settings.match_min_score:g}: no match.</p>" + note
            )
        album = self._album(outcome.matched_album_id) or {}
        rows = [
            ["album id", str(outcome.matched_album_id)],
            ["artist", album.get("artist_name") or "?"],
            ["title", album.get("album_title") or "?"],
            ["library code", library_code(album) or "none"],
            ["label", album.get("label") or ""],
            ["score", f"{outcome.match_score:.3f}" if outcome.match_score is not None else ""],
            ["matched by", outcome.match_method or ""],
        ]
        return table(None, rows) + note
