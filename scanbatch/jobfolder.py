"""A job's folder, `<data_dir>/jobs/<jobId>/`: the normalised manifest, the images named by item
and position, an append-only `results.jsonl` and the executed notebook.

The processing kernel never opens the DuckDB store (one writing process per file), so this
folder is the whole interface between the server and the kernel."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scanbatch.images import EXTENSIONS, sniff_mime
from scanbatch.models import ItemOutcome, Manifest, Photo
from scanbatch.private import DIR_MODE

MANIFEST = "manifest.json"
RESULTS = "results.jsonl"
EXECUTED_NOTEBOOK = "process_batch.ipynb"  # the job's audit trail, beside its inputs
IMAGES = "images"


@dataclass(frozen=True)
class JobFolder:
    path: Path

    @classmethod
    def for_job(cls, jobs_dir: Path, job_id: str) -> JobFolder:
        return cls(Path(jobs_dir) / job_id)

    @property
    def job_id(self) -> str:
        return self.path.name

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    @property
    def notebook_path(self) -> Path:
        return self.path / EXECUTED_NOTEBOOK

    @property
    def images_dir(self) -> Path:
        return self.path / IMAGES

    def exists(self) -> bool:
        return self.manifest_path.exists()

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

    def image_path(self, item_index: int, position: int, mime_type: str) -> Path:
        # Never the client's filename: names are ours, so nothing in them can escape the folder.
        return self.images_dir / f"item{item_index:02d}_{position}{EXTENSIONS[mime_type]}"

    def write_image(self, item_index: int, position: int, data: bytes) -> Path:
        path = self.image_path(item_index, position, sniff_mime(data, index=None))
        path.write_bytes(data)
        return path

    def image_paths(self, item_index: int) -> list[Path]:
        prefix = f"item{item_index:02d}_"
        found = [p for p in self.images_dir.iterdir() if p.name.startswith(prefix)]
        return sorted(found, key=lambda p: int(p.stem.split("_")[1]))

    def photos(self, item_index: int, photo_types: list[str]) -> list[Photo]:
        photos = []
        for path, photo_type in zip(self.image_paths(item_index), photo_types, strict=True):
            data = path.read_bytes()
            photos.append(
                Photo(data=data, mime_type=sniff_mime(data, index=None), photo_type=photo_type)
            )
        return photos


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


def read_results(path: Path, start: int = 0) -> tuple[list[ItemOutcome], int]:
    """Whole lines of `results.jsonl` from byte offset `start`. Returns the outcomes and the
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


def iter_results(path: Path) -> Iterator[ItemOutcome]:
    outcomes, _ = read_results(path)
    yield from outcomes
