"""Turning a selection of photos into records and jobs, with the server's own checks.

File names written as `item03_1_center_label.jpg` (what `scanbatch synth` and the golden-set
export write) say the record, the photo's place in it and its type; other photos each start a
record of their own, in the order they were selected. The checks are the server's functions
(`scanbatch.images`, `scanbatch.validation`), so the page refuses exactly what the server would,
with the same words, before anything is sent."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scanbatch.errors import ScanbatchError
from scanbatch.images import check_size, sniff_mime
from scanbatch.validation import MAX_IMAGES_PER_ITEM, batch_slices, parse_manifest

PHOTO_TYPES = ("front_cover", "back_cover", "center_label", "sticker", "other")
ACCEPT = ".jpg,.jpeg,.png,.webp,.heic,.heif,image/*"
CONTEXT_KEYS = ("artistName", "albumTitle", "catalogItemId")

_NAMED = re.compile(r"^item(?P<record>\d+)[_-](?P<position>\d+)(?:[_-](?P<type>[^.]+))?\.", re.I)
_KEYWORDS = (
    ("center", "center_label"),
    ("label", "center_label"),
    ("back", "back_cover"),
    ("front", "front_cover"),
    ("cover", "front_cover"),
    ("sticker", "sticker"),
    ("review", "sticker"),
)


@dataclass
class SelectedPhoto:
    """One photo of the selection, as the page holds it."""

    name: str
    data: bytes = field(repr=False)
    record: int  # 1-based record number, editable on the page
    position: int  # order within the record
    photo_type: str


@dataclass
class Record:
    number: int
    photos: list[SelectedPhoto]
    context: dict[str, Any] = field(default_factory=dict)

    def manifest_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "imageCount": len(self.photos),
            "photoTypes": [p.photo_type for p in self.photos],
        }
        context = {k: v for k, v in self.context.items() if v not in (None, "")}
        if context:
            item["context"] = context
        return item


@dataclass
class PlannedJob:
    records: list[Record]

    @property
    def photos(self) -> list[SelectedPhoto]:
        return [p for r in self.records for p in r.photos]

    def manifest(self) -> dict[str, Any]:
        return {"items": [r.manifest_item() for r in self.records]}

    def files(self) -> list[tuple[str, bytes]]:
        return [(p.name, p.data) for p in self.photos]


class SelectionError(ScanbatchError):
    """The selection breaks one of the server's limits; the message says which and how to fix."""

    status = 400


def guess_type(name: str) -> str:
    lowered = name.lower()
    for word, photo_type in _KEYWORDS:
        if word in lowered:
            return photo_type
    return "front_cover"


def named_place(name: str) -> tuple[int, int] | None:
    """(record, position) from a name like `item03_1_center_label.jpg`, else None."""
    m = _NAMED.match(name)
    return (int(m["record"]), int(m["position"])) if m else None


def group_photos(files: Iterable[tuple[str, bytes]]) -> list[SelectedPhoto]:
    """Photos with a record and a type each: from names like `item03_1_center_label.jpg`
    (record 4, second photo, center label), else one new record per photo, in order."""
    files = list(files)
    named: list[tuple[int, int, int, str, bytes, str]] = []
    plain: list[tuple[str, bytes]] = []
    for order, (name, data) in enumerate(files):
        m = _NAMED.match(name)
        if m:
            ptype = (m["type"] or "").strip("_-") or guess_type(name)
            named.append((int(m["record"]), int(m["position"]), order, name, data, ptype))
        else:
            plain.append((name, data))
    photos: list[SelectedPhoto] = []
    numbers: dict[int, int] = {}  # record number in the names -> record number on the page
    for record, position, _order, name, data, ptype in sorted(named):
        number = numbers.setdefault(record, len(numbers) + 1)
        photos.append(SelectedPhoto(name, data, number, position, ptype))
    for name, data in plain:
        number = len(numbers) + 1
        numbers[-number] = number
        photos.append(SelectedPhoto(name, data, number, 0, guess_type(name)))
    return photos


def records_of(
    photos: Sequence[SelectedPhoto], contexts: Mapping[int, Mapping[str, Any]] | None = None
) -> list[Record]:
    """The records in record-number order, each with its photos in position order."""
    by_number: dict[int, list[SelectedPhoto]] = {}
    for p in photos:
        by_number.setdefault(p.record, []).append(p)
    contexts = contexts or {}
    return [
        Record(n, sorted(ps, key=lambda p: p.position), dict(contexts.get(n, {})))
        for n, ps in sorted(by_number.items())
    ]


def parse_context(number: int, raw: Mapping[str, str]) -> dict[str, Any]:
    """A record's optional context from the page's text boxes; catalogItemId must be a number."""
    context: dict[str, Any] = {}
    for key in CONTEXT_KEYS:
        value = (raw.get(key) or "").strip()
        if not value:
            continue
        if key == "catalogItemId":
            if not value.isdigit():
                raise SelectionError(
                    f"Record {number}: catalog item id must be a whole number (the album's "
                    f"id in the library catalog), got '{value[:30]}'; leave it empty if unknown"
                )
            context[key] = int(value)
        else:
            context[key] = value
    return context


def plan_jobs(records: Sequence[Record]) -> list[PlannedJob]:
    """Split the records into jobs the server accepts (at most 10 records and 50 photos each),
    after checking every photo and every job with the server's own functions."""
    if not records:
        raise SelectionError("No images provided: choose photos with the upload button first")
    for record in records:
        if len(record.photos) > MAX_IMAGES_PER_ITEM:
            raise SelectionError(
                f"Record {record.number} has {len(record.photos)} photos: each item cannot "
                f"exceed {MAX_IMAGES_PER_ITEM} images. Move some photos to another record."
            )
    jobs = split_jobs(records)
    for job in jobs:
        check_job(job)
    return jobs


def split_jobs(records: Sequence[Record]) -> list[PlannedJob]:
    """Consecutive records, at most 10 records and 50 photos per job."""
    slices = batch_slices([len(r.photos) for r in records])
    return [PlannedJob(list(records[s.start : s.stop])) for s in slices]


def check_job(job: PlannedJob) -> None:
    """What the server's upload route checks, in its order, naming the file at fault."""
    for index, photo in enumerate(job.photos):
        try:
            check_size(len(photo.data), index=index)
            sniff_mime(photo.data, index=index)
        except ScanbatchError as exc:
            raise SelectionError(f"{photo.name}: {exc.message}") from None
    try:
        parse_manifest(json.dumps(job.manifest()), len(job.photos))
    except ScanbatchError as exc:
        first = job.records[0].number
        raise SelectionError(f"Records from {first}: {exc.message}") from None
