"""What `notebooks/process_batch.ipynb` runs inside its kernel, and the report it shows.

The kernel never opens the job store: it reads the job folder and the catalog snapshot and
appends to `results.jsonl`; the server ingests the lines. The executed notebook is the job's
audit trail, written for a person: the manifest, then each item in item order with its photos,
what was sent, what came back, the catalog match and any error in words, then a summary. The
logic lives here so that the notebook stays a few readable cells."""

from __future__ import annotations

import contextlib
import html
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanbatch.extractors import create_extractor, extractor_names, get_extractor_class
from scanbatch.extractors.base import Extractor
from scanbatch.jobfolder import JobFolder
from scanbatch.models import ItemOutcome, Manifest, ManifestItem, Status
from scanbatch.names import FIELD_LABELS
from scanbatch.pipeline import FolderRun
from scanbatch.settings import Settings, kernel_fields
from scanbatch.thumbnails import inline_img, jpeg_thumbnail

if TYPE_CHECKING:
    from scanbatch.catalog.match import Matcher

log = logging.getLogger(__name__)

THUMBNAIL_PX = 160
# Parameters of the notebook that describe the job rather than the settings.
JOB_PARAMETERS = ("job_dir", "catalog_snapshot")


def notebook_parameters() -> list[str]:
    """Every parameter the processing notebook declares, in order."""
    return [*JOB_PARAMETERS, *kernel_fields()]


# What `prepare` built for the job this kernel expects: reused by `open_job` when the job's
# settings are the same (a Gemini client takes ~0.1 s to build; the catalog index much longer).
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
        backend = create_extractor(settings.extractor, settings)
        backend.warm()
        _warmed.update(settings=settings, backend=backend)
        if params.get("catalog_snapshot"):
            from scanbatch.catalog import load_matcher

            load_matcher(params["catalog_snapshot"], settings.match_min_score)
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
        *(parameters.get(name) for name in JOB_PARAMETERS),
    )


def open_job(parameters: Mapping[str, Any]) -> BatchJob:
    """The job described by the notebook's parameters (pass `globals()`): settings validated,
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
    from scanbatch.errors import ConfigError

    settings = Settings.from_kernel_parameters(dict(parameters))
    if not parameters.get("job_dir"):
        raise ConfigError("notebook parameter job_dir is empty: pass the job's folder")
    folder = JobFolder(Path(parameters["job_dir"]))
    manifest = folder.read_manifest()
    if _warmed.pop("settings", None) == settings:
        backend = _warmed.pop("backend")  # one job per kernel: it is not shared
    else:
        backend = create_extractor(settings.extractor, settings)
    snapshot = Path(parameters["catalog_snapshot"]) if parameters.get("catalog_snapshot") else None
    matcher = None
    if snapshot is not None and snapshot.exists():
        from scanbatch.catalog import load_matcher

        # The index `prepare` built, unless the catalog changed since.
        matcher = load_matcher(snapshot, settings.match_min_score)
    return BatchJob(folder, manifest, settings, backend, matcher, snapshot)


class BatchJob:
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
                    _field_text(fields.get("artistName")),
                    _field_text(fields.get("albumTitle")),
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
        if usage is not None:
            if usage.latency_ms is not None:
                rows.append(["time", f"{usage.latency_ms / 1000:.2f} s"])
            if usage.input_tokens is not None or usage.output_tokens is not None:
                rows.append(["tokens", f"{usage.input_tokens} in, {usage.output_tokens} out"])
            if usage.retries:
                rows.append(["retries", str(usage.retries)])
        return table(None, rows)

    def _album(self, album_id: int | None) -> dict[str, Any] | None:
        if album_id is None or self.matcher is None:
            return None
        getter = getattr(self.matcher, "get", None)
        return getter(album_id) if getter is not None else None

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


class HtmlReport:
    """HTML that a notebook displays as the cell's result (and nbconvert keeps)."""

    def __init__(self, body: str) -> None:
        self.body = body

    def _repr_html_(self) -> str:
        return self.body

    def __str__(self) -> str:
        return self.body


def esc(value: object) -> str:
    return html.escape(str(value))


def table(header: list[str] | None, rows: list[list[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if header else ""
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{esc(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def fields_html(extraction: dict[str, Any]) -> str:
    rows = []
    for key, label in FIELD_LABELS.items():
        field = extraction.get(key)
        if field is None:
            rows.append([label, "(not read)", ""])
        else:
            rows.append([label, field["value"], f"{field['confidence']:.2f}"])
    return table(["field", "value", "confidence"], rows)


def error_html(outcome: ItemOutcome) -> str:
    message = outcome.error_message or "failed without a message"
    advice = {True: "Trying again may succeed.", False: "Trying again will not help."}
    parts = [f"<p><b>{esc(message)}</b></p>"]
    detail = []
    if outcome.error_code:
        detail.append(f"code <code>{esc(outcome.error_code)}</code>")
    if outcome.retryable is not None:
        detail.append(advice[outcome.retryable])
    if detail:
        parts.append(f"<p>{' '.join(detail)}</p>")
    return "".join(parts)


def library_code(album: Mapping[str, Any]) -> str:
    """The station's shelf code: letters, artist number / album number (e.g. "BYR 3/12")."""
    letters, artist_no, number = (
        album.get("code_letters"),
        album.get("code_artist_number"),
        album.get("code_number"),
    )
    if not letters:
        return ""
    code = f"{letters} {artist_no}" if artist_no is not None else letters
    return f"{code}/{number}" if number is not None else code


def album_label(album: Mapping[str, Any] | None) -> str:
    if not album:
        return ""
    code = library_code(album)
    text = f"{album.get('artist_name')} – {album.get('album_title')}"
    return f"{text} [{code}]" if code else text


def _field_text(field: Mapping[str, Any] | None) -> str:
    return f"{field['value']} ({field['confidence']:.2f})" if field else ""


def warm_report() -> None:
    """Import what the report's thumbnails use (Pillow's plugins, the HEIF opener: ~30 ms),
    so that a job's first thumbnail does not import them while its photos are being sent."""
    from PIL import Image

    tiny = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiny, "JPEG")
    jpeg_thumbnail(tiny.getvalue(), THUMBNAIL_PX)


def thumbnail_html(path: Path) -> str:
    from PIL import Image

    try:
        jpeg = jpeg_thumbnail(path.read_bytes(), THUMBNAIL_PX, quality=70)
        with Image.open(path) as img:  # the header only (HEIC is registered by now): its size
            size = img.size
    except Exception as exc:  # an unreadable photo is itself worth seeing in the audit trail
        return f"<span>unreadable photo: {esc(exc)}</span>"
    return f"{inline_img(jpeg, path.name)}<br>{size[0]}×{size[1]} px"


# -- the notebook's parameters cell ----------------------------------------------------------

JOB_PARAMETER_LINES = (
    'job_dir: str = ""  # The job folder, data/jobs/<jobId>.',
    'catalog_snapshot: str = ""  # Parquet snapshot of the catalog to match against; empty: none.',
)


def notebook_default(name: str) -> Any:
    """A setting's default as the notebook declares it: paths relative to the repository (the
    runner always passes them absolute), None as "" (the settings read "" as None), and the
    offline extractor (the settings' own default depends on GEMINI_API_KEY)."""
    from scanbatch.settings import REPO_ROOT

    if name == "extractor":
        return "ocr"
    value = Settings.model_fields[name].default
    if isinstance(value, Path):
        return str(value.relative_to(REPO_ROOT) if value.is_relative_to(REPO_ROOT) else value)
    return "" if value is None else value


def parameters_source() -> str:
    """The source of the notebook's parameters cell, one `name: type = value  # help` line per
    parameter, generated from the settings object (tests pin the notebook against it)."""
    lines = [
        "# Parameters. papermill injects this job's values in the cell below; the server and",
        "# `scanbatch run` take them from the settings object (Settings.kernel_parameters).",
        *JOB_PARAMETER_LINES,
    ]
    for name in kernel_fields():
        default = notebook_default(name)
        help_text = " ".join((Settings.model_fields[name].description or "").split())
        literal = json.dumps(default) if isinstance(default, str) else repr(default)
        lines.append(f"{name}: {type(default).__name__} = {literal}  # {help_text}")
    return "\n".join(lines)
