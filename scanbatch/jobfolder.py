"""A job's folder, `<data_dir>/jobs/<jobId>/`: the normalised manifest, the images named by item
and position, an append-only `results.jsonl`, the executed notebook, its log and pid file, and
the thumbnails the review routes make. Every name in it is spelled here, and `results.jsonl`
is read here only.

The processing kernel never opens the DuckDB store (one writing process per file), so this
folder is the whole interface between the server and the kernel.

Each photo's MIME type is read from its bytes once, when it is staged, and recorded in the
photo's name: JobFolder names it `item<NN>_<position><suffix>` with the suffix of that type
(one suffix per type: `EXTENSIONS`), as it has since the first job folder. Every later reader
takes the type from there (`photo_files`); only a file whose suffix is none of ours (a folder
put together by hand) has its bytes sniffed."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scanbatch.errors import ExtractionError
from scanbatch.images import EXTENSIONS, SNIFF_BYTES, sniff_mime
from scanbatch.models import BacklogEvent, ItemOutcome, Manifest, Photo
from scanbatch.private import DIR_MODE

MANIFEST = "manifest.json"
RESULTS = "results.jsonl"
EXECUTED_NOTEBOOK = "process_batch.ipynb"  # the job's audit trail, beside its inputs
NOTEBOOK_LOG = "papermill.log"
PID_FILE = "papermill.pid"  # the notebook process running the job, while it runs
BACKLOG = "backlog.jsonl"  # a backlog job's trips through a batch API: sent, answered
IMAGES = "images"
THUMBNAILS = "thumbnails"
MIME_BY_SUFFIX = {suffix: mime for mime, suffix in EXTENSIONS.items()}


@dataclass(frozen=True)
class PhotoFile:
    """One photo of an item on disk, with the MIME type recorded when it was staged."""

    path: Path
    mime_type: str


@dataclass
class ItemFiles:
    """An item's photos and thumbnails on disk, each as (path, size in bytes). Paths are
    strings: a prune lists hundreds of thousands, and making a Path of each cost a fifth of
    its time (measured)."""

    photos: list[tuple[str, int]] = field(default_factory=list)
    thumbnails: list[tuple[str, int]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.photos) + sum(size for _, size in self.thumbnails)


def _item_prefix(item_index: int) -> str:
    """How the names of an item's photos, and of their thumbnails, begin."""
    return f"item{item_index:02d}_"


def _entry(name: str) -> property:
    """The path of the folder's file or subfolder `name`."""
    return property(lambda folder: folder.path / name, doc=f"`<job folder>/{name}`")


@dataclass(frozen=True)
class JobFolder:
    path: Path

    @classmethod
    def for_job(cls, jobs_dir: Path, job_id: str) -> JobFolder:
        return cls(Path(jobs_dir) / job_id)

    @property
    def job_id(self) -> str:
        return self.path.name

    manifest_path = _entry(MANIFEST)
    results_path = _entry(RESULTS)
    notebook_path = _entry(EXECUTED_NOTEBOOK)
    notebook_log_path = _entry(NOTEBOOK_LOG)
    pid_path = _entry(PID_FILE)
    backlog_path = _entry(BACKLOG)
    images_dir = _entry(IMAGES)
    thumbnails_dir = _entry(THUMBNAILS)

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def notebook_saved(self) -> bool:
        """The executed notebook was saved at the end of its run (papermill records the run's
        `end_time` in that save only): not the parameterised copy a killed run leaves."""
        try:
            notebook = json.loads(self.notebook_path.read_text())
        except (FileNotFoundError, ValueError):
            return False
        return bool(notebook.get("metadata", {}).get("papermill", {}).get("end_time"))

    def create(self, manifest: Manifest) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        self.images_dir.mkdir(exist_ok=True, mode=DIR_MODE)
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest.model_dump(mode="json", by_alias=True), indent=2))
        os.replace(tmp, self.manifest_path)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def read_manifest(self) -> Manifest:
        return Manifest.model_validate_json(self.manifest_path.read_text())

    @staticmethod
    def left_running(jobs_dir: Path) -> list[JobFolder]:
        """Folders whose run was not seen to its end: the pid file a run writes at its start
        and its runner removes once the process has exited (after the notebook's save)."""
        try:
            entries = list(os.scandir(jobs_dir))
        except FileNotFoundError:
            return []
        return [
            JobFolder(Path(e.path))
            for e in entries
            if e.is_dir() and os.path.exists(os.path.join(e.path, PID_FILE))
        ]

    # -- photos -----------------------------------------------------------------------------

    def image_path(self, item_index: int, position: int, mime_type: str) -> Path:
        """Where a photo of `mime_type` (read from its bytes) goes: the name records the type.
        Never the client's filename: names are ours, so nothing in them can escape the folder."""
        return self.images_dir / f"item{item_index:02d}_{position}{EXTENSIONS[mime_type]}"

    def write_image(
        self, item_index: int, position: int, data: bytes, mime_type: str | None = None
    ) -> Path:
        """Store a photo held in memory. `mime_type` is the type its bytes were found to be
        when the caller checked them; without it, they are read here."""
        mime_type = mime_type or sniff_mime(data, index=None)
        path = self.image_path(item_index, position, mime_type)
        path.write_bytes(data)
        return path

    def image_paths(self, item_index: int) -> list[Path]:
        prefix = _item_prefix(item_index)
        found = [p for p in self.images_dir.iterdir() if p.name.startswith(prefix)]
        return sorted(found, key=lambda p: int(p.stem.split("_")[1]))

    def photo_files(self, item_index: int) -> list[PhotoFile]:
        """The item's photos in position order, each with its recorded MIME type."""
        return [PhotoFile(path, recorded_mime(path)) for path in self.image_paths(item_index)]

    def photos(self, item_index: int, photo_types: Sequence[str]) -> list[Photo]:
        """The item's photos in memory, as an extractor takes them; an `ExtractionError` when
        the folder does not hold one photo per photo type (a folder damaged by hand)."""
        files = self.photo_files(item_index)
        if len(files) != len(photo_types):
            raise ExtractionError(
                f"item {item_index}: its job folder holds {len(files)} of its "
                f"{len(photo_types)} photos ({', '.join(photo_types)}): submit the record again",
                code="photos_missing",
                retryable=False,
            )
        return [
            Photo(data=f.path.read_bytes(), mime_type=f.mime_type, photo_type=photo_type)
            for f, photo_type in zip(files, photo_types, strict=True)
        ]

    def thumbnail_path(self, photo: Path, size: int) -> Path:
        """Where the JPEG thumbnail of `photo` at `size` px is kept."""
        return self.thumbnails_dir / f"{photo.stem}_{size}.jpg"

    def item_files(self, item_indexes: Iterable[int]) -> dict[int, ItemFiles]:
        """The photos and thumbnails of these items, with their sizes: one listing of each
        folder, whatever the number of items (a prune reads thousands of job folders)."""
        wanted = {_item_prefix(i): i for i in item_indexes}
        found = {i: ItemFiles() for i in wanted.values()}
        width = len(_item_prefix(0))
        for folder, thumbnails in ((self.images_dir, False), (self.thumbnails_dir, True)):
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:  # no thumbnails made yet, or the job deleted meanwhile
                continue
            for entry in entries:
                item = wanted.get(entry.name[:width])
                if item is None:
                    continue
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
                files = found[item].thumbnails if thumbnails else found[item].photos
                files.append((entry.path, size))
        return found

    def remove_item_files(self, item_indexes: Iterable[int]) -> dict[int, ItemFiles]:
        """Remove the photos and thumbnails of these items; what was removed, per item. A
        file already gone (removed by a prune that was stopped halfway) is not counted."""
        removed: dict[int, ItemFiles] = {}
        for item, files in self.item_files(item_indexes).items():
            gone = ItemFiles()
            for path, size in files.photos:
                if _unlink(path):
                    gone.photos.append((path, size))
            for path, size in files.thumbnails:
                if _unlink(path):
                    gone.thumbnails.append((path, size))
            removed[item] = gone
        return removed

    # -- results ----------------------------------------------------------------------------

    def results_writer(self) -> ResultsWriter:
        return ResultsWriter(self.results_path)

    def new_outcomes(self, start: int = 0) -> tuple[list[ItemOutcome], int]:
        """The lines written since byte offset `start` and the offset to read from next (the
        server's ingest, while the kernel appends): see `read_results`."""
        return read_results(self.results_path, start)

    def outcomes(self) -> dict[int, ItemOutcome]:
        """Every finished item's outcome by item index. An item's first line counts, as in the
        store: a later line for it (a run that raced a resumed one) changes nothing."""
        return first_per_item(read_results(self.results_path)[0])

    def pending(self) -> list[int]:
        """Item indexes of the job that have no line in `results.jsonl` yet."""
        done = self.outcomes()
        return [i for i in range(len(self.read_manifest().items)) if i not in done]

    # -- the backlog ------------------------------------------------------------------------

    def append_backlog(self, events: Sequence[BacklogEvent]) -> None:
        """Record what the server sent for this job in a Google batch, or got back: the
        job's notebook shows it, and reads its records' answers from here. Fsynced before the
        batch is settled in the store, so a crash never loses an answer the store counts."""
        if not events:
            return
        text = "".join(e.model_dump_json(by_alias=True, exclude_none=True) + "\n" for e in events)
        with open(self.backlog_path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def backlog_events(self) -> list[BacklogEvent]:
        """Every event in order (none for an interactive job); a torn last line is skipped."""
        if not self.backlog_path.exists():
            return []
        events = []
        for line in self.backlog_path.read_bytes().splitlines(keepends=True):
            if line.endswith(b"\n") and line.strip():
                events.append(BacklogEvent.model_validate_json(line))
        return events

    def backlog_answers(self) -> dict[int, BacklogEvent] | None:
        """Each record's last answer by item index, or None when the job was never sent
        through the backlog (it is read interactively)."""
        events = self.backlog_events()
        if not any(e.event == "sent" for e in events):
            return None
        return {e.item: e for e in events if e.event == "answered" and e.item is not None}


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def recorded_mime(path: Path) -> str:
    """The MIME type recorded in a photo's name; the bytes are read only when the suffix is
    not one JobFolder gives (a 400 naming the file when they are not an image)."""
    mime = MIME_BY_SUFFIX.get(path.suffix)
    if mime is not None:
        return mime
    with open(path, "rb") as fh:
        return sniff_mime(fh.read(SNIFF_BYTES), index=None)


class ResultsWriter:
    """Appends one line per finished item, flushed and fsynced so that a crash after the
    append loses nothing. Thread-safe: items of a job finish concurrently."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, outcome: ItemOutcome) -> None:
        line = outcome.model_dump_json(by_alias=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def first_per_item(outcomes: Iterable[ItemOutcome]) -> dict[int, ItemOutcome]:
    """Each item's first outcome, by item index: the one the store keeps (a later line for an
    item, from a run that raced a resumed one, changes nothing)."""
    found: dict[int, ItemOutcome] = {}
    for outcome in outcomes:
        found.setdefault(outcome.item_index, outcome)
    return found


def read_results(path: Path, start: int = 0) -> tuple[list[ItemOutcome], int]:
    """The one parser of `results.jsonl` lines, wherever the file is (a job folder, a dataset
    export): whole lines from byte offset `start`. Returns the outcomes in file order and the
    offset just after the last whole line: a torn last line (no newline yet) is left for the
    next read instead of being parsed half-written."""
    path = Path(path)
    if not path.exists():
        return [], start
    with open(path, "rb") as fh:
        fh.seek(start)
        chunk = fh.read()
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], start
    outcomes = [
        ItemOutcome.model_validate_json(line)
        for line in chunk[: end + 1].splitlines()
        if line.strip()
    ]
    return outcomes, start + end + 1
