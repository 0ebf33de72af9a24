"""Turning a selection of photos into records and jobs, with the server's own checks.

The page works on what the browser can tell about each file without sending it (`PhotoInfo`:
name, size, first bytes, EXIF capture time, file time): the photos themselves go from the
browser straight to the API, so the kernel never holds them.

Three ways to group (`Grouping`), whichever the director picks:
- NAMES: names written as `item03_1_center_label.jpg` (what `scanbatch synth` and the golden-set
  export write) say the record, the photo's place in it and its type; other photos each start a
  record of their own, in the order they were selected.
- PATTERN: every record is the same few photos in the same order ("front cover, back cover,
  center label"), so the selection is cut into runs of that length.
- TIME: the photos of one record are seconds apart and the next record comes after a longer
  pause, so the selection is cut at the long pauses of the EXIF capture times.

A wrong split is fixed by moving one photo (`move`), not by retyping numbers. The checks are the
server's functions (`scanbatch.images`, `scanbatch.validation`), so the page refuses exactly
what the server would, with the same words, before anything is sent."""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import enum
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from scanbatch.errors import ScanbatchError
from scanbatch.images import SNIFF_BYTES, check_size, sniff_mime
from scanbatch.validation import MAX_IMAGES_PER_ITEM, batch_slices, parse_manifest

PHOTO_TYPES = ("front_cover", "back_cover", "center_label", "sticker", "other")
ACCEPT = ".jpg,.jpeg,.png,.webp,.heic,.heif,image/*"
CONTEXT_KEYS = ("artistName", "albumTitle", "catalogItemId")

# How much of each file the browser reads for the type check: `sniff_mime` looks at the first
# SNIFF_BYTES (32: JPEG and PNG signatures, WebP's RIFF header, the HEIC/HEIF `ftyp` box with
# its compatible brands); 64 leaves room without costing anything.
HEAD_BYTES = 64
assert HEAD_BYTES >= SNIFF_BYTES

DEFAULT_PATTERN = ("front_cover", "back_cover", "center_label")

# TIME: the pause that starts a new record is found from the crate's own pauses (see
# `_split_at`); these bound that guess.
MIN_GAP_SECONDS = 8.0  # a quicker pause than this is never a new record: bursts, a re-take
TYPICAL_GAP_SECONDS = 15.0  # where short pauses end and long ones begin, in most crates

_NAMED = re.compile(r"^item(?P<record>\d+)[_-](?P<position>\d+)(?:[_-](?P<type>[^.]+))?\.", re.I)
# What cameras and phones name their photos: a short prefix and a counter that wraps
# (IMG_9999.JPG is followed by IMG_0001.JPG), e.g. IMG_4101.HEIC, DSC_0042.JPG, DSCF1234.JPG.
_COUNTER = re.compile(r"^[A-Za-z]{2,5}_?(?P<number>\d{4,5})\.[A-Za-z0-9]+$")
_KEYWORDS = (
    ("center", "center_label"),
    ("label", "center_label"),
    ("back", "back_cover"),
    ("front", "front_cover"),
    ("cover", "front_cover"),
    ("sticker", "sticker"),
    ("review", "sticker"),
)


class SelectionError(ScanbatchError):
    """The selection breaks one of the server's limits; the message says which and how to fix."""

    status = 400


@dataclass(frozen=True)
class PhotoInfo:
    """What the page knows about one chosen file without its bytes."""

    index: int  # position in the selection: the browser sends the files by this number
    name: str
    size: int  # bytes
    head: bytes = field(repr=False)  # the first HEAD_BYTES, for the type check
    taken: datetime | None = None  # EXIF DateTimeOriginal as the camera wrote it (naive)
    last_modified: datetime | None = None  # the file's time, naive local

    @property
    def when(self) -> datetime | None:
        """The capture time, else the file's time (which may be when it was copied)."""
        return self.taken or self.last_modified

    @classmethod
    def of_bytes(
        cls,
        index: int,
        name: str,
        data: bytes,
        *,
        taken: datetime | None = None,
        last_modified: datetime | None = None,
    ) -> PhotoInfo:
        """The info of a file the kernel holds whole (the old upload widget, tests)."""
        return cls(index, name, len(data), bytes(data[:HEAD_BYTES]), taken, last_modified)

    @classmethod
    def from_browser(cls, index: int, entry: Mapping[str, Any]) -> PhotoInfo:
        """The info the page's script sends for one file: `{"name", "size", "head" (base64 of
        the first HEAD_BYTES), "taken" (EXIF DateTimeOriginal as its text, or null),
        "lastModified" (ms since the epoch, as `File.lastModified`)}`."""
        name = str(entry.get("name") or f"file {index + 1}")
        size = entry.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise SelectionError(f"{name}: the browser gave no size for this file; choose it again")
        try:
            head = base64.b64decode(entry.get("head") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise SelectionError(
                f"{name}: the browser could not read the start of this file; choose it again"
            ) from None
        modified = entry.get("lastModified")
        last_modified = None
        if isinstance(modified, int | float) and not isinstance(modified, bool):
            # A time no clock shows counts as none given.
            with contextlib.suppress(OverflowError, OSError, ValueError):
                last_modified = datetime.fromtimestamp(modified / 1000)
        taken = parse_exif_time(entry.get("taken"))
        return cls(index, name, size, head[:HEAD_BYTES], taken, last_modified)


def parse_exif_time(value: Any) -> datetime | None:
    """EXIF's `2026:12:01 10:15:03` (also with fractions, or ISO 8601 as some readers give it)
    as a naive datetime; None for nothing or a camera's blank `0000:00:00 00:00:00`."""
    if not isinstance(value, str):
        return None
    text = value.strip().strip("\x00").strip()
    m = re.match(r"^(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?(.*)$", text)
    if not m:
        return None
    try:
        when = datetime(*(int(g) for g in m.groups()[:6]))
    except ValueError:
        return None  # 0000:00:00 and other blanks
    if m[7]:
        when += timedelta(seconds=float(m[7]))
    zone = m[8].strip()
    if zone:
        try:
            aware = datetime.fromisoformat(when.isoformat() + zone.replace("Z", "+00:00"))
        except ValueError:
            return when
        # A reader that gave a zone turned the camera's local time into an instant: back to
        # the local clock, which is what the camera showed.
        return aware.astimezone().replace(tzinfo=None)
    return when


@dataclass
class SelectedPhoto:
    """One photo of the selection in its record, as the page holds it."""

    info: PhotoInfo
    record: int  # 1-based record number, editable on the page
    position: int  # order within the record
    photo_type: str

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def index(self) -> int:
        return self.info.index

    @property
    def size(self) -> int:
        return self.info.size


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

    @property
    def total_bytes(self) -> int:
        return sum(p.size for p in self.photos)

    def manifest(self) -> dict[str, Any]:
        return {"items": [r.manifest_item() for r in self.records]}

    def files(self) -> list[int]:
        """The selection indices of the job's photos, in the order the POST sends them."""
        return [p.index for p in self.photos]


class Grouping(enum.StrEnum):
    NAMES = "names"
    PATTERN = "pattern"
    TIME = "time"


class Grouped(list[Record]):
    """The records of a grouping, with how they were grouped (so `move` can re-type photos)
    and what the director should know about the split (`notes`, shown beside the records)."""

    def __init__(
        self,
        records: Iterable[Record] = (),
        *,
        how: Grouping = Grouping.NAMES,
        pattern: Sequence[str] = DEFAULT_PATTERN,
        rule: Sequence[str] = (),
    ) -> None:
        super().__init__(records)
        self.how = how
        self.pattern = tuple(pattern)
        self.rule = tuple(rule)  # how the split was decided, fixed at grouping time

    @property
    def notes(self) -> list[str]:
        """Sentences for the page: the rule used, and records that do not look like the rest."""
        return [*self.rule, *_count_notes(self)]


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


def parse_pattern(value: str | Sequence[str]) -> tuple[str, ...]:
    """The photo types of one record, in order, from the page's text ("front cover, back cover,
    center label") or a sequence of types; a clear sentence for an empty or unknown one."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    types = tuple(re.sub(r"[\s-]+", "_", str(p).strip().lower()) for p in parts)
    types = tuple(t for t in types if t)
    known = ", ".join(PHOTO_TYPES)
    if not types:
        raise SelectionError(
            "The pattern is empty: name the photos of one record in the order they were taken, "
            f"e.g. 'front_cover, back_cover, center_label' (types: {known})"
        )
    for t in types:
        if t not in PHOTO_TYPES:
            raise SelectionError(
                f"The pattern has '{t[:30]}', which is not a photo type: use {known}, "
                "separated by commas"
            )
    if len(types) > MAX_IMAGES_PER_ITEM:
        raise SelectionError(
            f"The pattern has {len(types)} photos: each item cannot exceed {MAX_IMAGES_PER_ITEM} "
            "images. Leave out the photos the reader needs least."
        )
    return types


def group_photos(photos: Iterable[PhotoInfo]) -> list[SelectedPhoto]:
    """Photos with a record and a type each: from names like `item03_1_center_label.jpg`
    (record 4, second photo, center label), else one new record per photo, in order."""
    named: list[tuple[int, int, int, PhotoInfo, str]] = []
    plain: list[PhotoInfo] = []
    for order, info in enumerate(photos):
        m = _NAMED.match(info.name)
        if m:
            ptype = (m["type"] or "").strip("_-") or guess_type(info.name)
            named.append((int(m["record"]), int(m["position"]), order, info, ptype))
        else:
            plain.append(info)
    selected: list[SelectedPhoto] = []
    numbers: dict[int, int] = {}  # record number in the names -> record number on the page
    for record, position, _order, info, ptype in sorted(named, key=lambda n: n[:3]):
        number = numbers.setdefault(record, len(numbers) + 1)
        selected.append(SelectedPhoto(info, number, position, ptype))
    for info in plain:
        number = len(numbers) + 1
        numbers[-number] = number
        selected.append(SelectedPhoto(info, number, 0, guess_type(info.name)))
    return selected


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


def suggest(photos: Sequence[PhotoInfo]) -> Grouping:
    """Names when every name says its record, time when every photo has a capture time, else
    the pattern."""
    if photos and all(_NAMED.match(p.name) for p in photos):
        return Grouping.NAMES
    if photos and all(p.taken is not None for p in photos):
        return Grouping.TIME
    return Grouping.PATTERN


def group(
    photos: Sequence[PhotoInfo],
    how: Grouping | str,
    *,
    pattern: str | Sequence[str] = DEFAULT_PATTERN,
    gap: float | timedelta | None = None,
) -> Grouped:
    """The records of a selection grouped `how`. `pattern` is the photo types of one record in
    the order they were taken (PATTERN cuts the selection into runs of its length; PATTERN and
    TIME type photos by their place in it). `gap` (seconds) overrides the pause that starts a
    new record under TIME."""
    how = Grouping(how)
    if len({p.index for p in photos}) != len(photos):
        raise ValueError("every photo needs its own selection index")
    if how is Grouping.NAMES:
        return Grouped(records_of(group_photos(photos)), how=how)
    types = parse_pattern(pattern)
    if how is Grouping.PATTERN:
        ordered = camera_order(photos)
        runs = [ordered[i : i + len(types)] for i in range(0, len(ordered), len(types))]
        return Grouped(_typed(runs, types), how=how, pattern=types)
    runs, rule = _by_time(photos, gap)
    return Grouped(_typed(runs, types), how=how, pattern=types, rule=rule)


def move(records: Sequence[Record], photo_index: int, to_record: int) -> Grouped:
    """The records with one photo (by selection index) moved to record `to_record` (1..n), or
    to a new record after the last (n + 1). Records are renumbered 1..n, an emptied one
    dropped; under PATTERN and TIME the photos of the two records touched are re-typed by
    their place in the pattern (types came from places there), under NAMES they keep theirs."""
    how = getattr(records, "how", Grouping.NAMES)
    types = getattr(records, "pattern", DEFAULT_PATTERN)
    rule = getattr(records, "rule", ())
    found = [(n, p) for n, r in enumerate(records) for p in r.photos if p.index == photo_index]
    if not found:
        raise SelectionError(f"Photo {photo_index + 1} is not in the selection: choose it again")
    source, photo = found[0]
    last = len(records)
    if not 1 <= to_record <= last + 1:
        raise SelectionError(
            f"There is no record {to_record}: move the photo to a record from 1 to {last}, "
            f"or to {last + 1} for a new record"
        )
    # Photos keep the order they were grouped in, wherever they move.
    rank = {p.index: n for n, p in enumerate(p for r in records for p in r.photos)}
    lists = [[p for p in r.photos if p is not photo] for r in records] + [[]]
    target = lists[to_record - 1]
    target.append(photo)
    target.sort(key=lambda p: rank[p.index])
    touched = {id(lists[source]), id(target)}
    retype = how in (Grouping.PATTERN, Grouping.TIME)
    out: list[Record] = []
    contexts = [r.context for r in records] + [{}]
    for photos, context in zip(lists, contexts, strict=True):
        if not photos:
            continue
        number = len(out) + 1
        fresh = [
            dataclasses.replace(
                p,
                record=number,
                position=position,
                photo_type=_type_at(position, types)
                if retype and id(photos) in touched
                else p.photo_type,
            )
            for position, p in enumerate(photos)
        ]
        out.append(Record(number, fresh, dict(context)))
    return Grouped(out, how=how, pattern=types, rule=rule)


def camera_order(photos: Sequence[PhotoInfo]) -> list[PhotoInfo]:
    """The photos in the order the camera took them when every name is a camera counter
    (IMG_4101 …), minding the wrap (IMG_9998, IMG_9999, IMG_0001); else in selection order.
    A file chooser lists by name, which puts IMG_0001 before IMG_9999."""
    by_selection = sorted(photos, key=lambda p: p.index)
    matches = [_COUNTER.match(p.name) for p in by_selection]
    widths = {len(m["number"]) for m in matches if m}
    if not photos or not all(matches) or len(widths) != 1:
        return by_selection
    modulus = 10 ** widths.pop()
    numbers = [int(m["number"]) for m in matches if m]
    start = _after_widest_gap(sorted(set(numbers)), modulus)
    keyed = sorted(
        zip(numbers, by_selection, strict=True),
        key=lambda np_: ((np_[0] - start) % modulus, np_[1].index),
    )
    return [p for _n, p in keyed]


def _after_widest_gap(numbers: list[int], modulus: int) -> int:
    """Where a run of counters starts: after the widest gap between them, going round the
    counter; the gap across the wrap wins a tie, so a plain run starts at its lowest."""
    start, widest = numbers[0], numbers[0] + modulus - numbers[-1]
    for before, after in itertools.pairwise(numbers):
        if after - before > widest:
            start, widest = after, after - before
    return start


def _by_time(
    photos: Sequence[PhotoInfo], gap: float | timedelta | None
) -> tuple[list[list[PhotoInfo]], list[str]]:
    """Runs of photos split at the long pauses, and sentences saying how."""
    rule: list[str] = []
    missing = [p for p in photos if p.when is None]
    if missing:
        raise SelectionError(
            f"{_some(missing)} no capture time (EXIF DateTimeOriginal) and no file time, so "
            "the photos cannot be grouped by time: group them by pattern instead"
        )
    untimed = [p for p in photos if p.taken is None]
    if untimed:
        rule.append(
            f"{_some(untimed)} no capture time (EXIF DateTimeOriginal): the file's time was "
            "used instead, which may be when it was copied. Check those records, or group "
            "by pattern."
        )
    if not photos:
        return [], rule
    sequence = {p.index: n for n, p in enumerate(camera_order(photos))}
    ordered = sorted(photos, key=lambda p: (p.when, sequence[p.index]))
    pauses = [
        (b.when - a.when).total_seconds()  # type: ignore[operator]
        for a, b in itertools.pairwise(ordered)
    ]
    if gap is not None:
        seconds = gap.total_seconds() if isinstance(gap, timedelta) else float(gap)
        if not seconds > 0:
            raise SelectionError(
                f"The pause between records must be more than 0 seconds, got {seconds:g}: "
                "leave it empty to let the page find it from the photos' times"
            )
        rule.append(f"A new record starts after a pause of more than {_span(seconds)}.")
    else:
        seconds, how = _split_at(pauses)
        rule.append(how)
    runs: list[list[PhotoInfo]] = [[ordered[0]]]
    for pause, photo in zip(pauses, ordered[1:], strict=True):
        if pause > seconds:
            runs.append([])
        runs[-1].append(photo)
    return runs, rule


def _split_at(pauses: Sequence[float]) -> tuple[float, str]:
    """The pause (seconds) above which a new record starts, and a sentence saying why.

    Short pauses (within a record) and long ones (between records) differ by a factor, not by
    a fixed number of seconds, and a crate's records need not all have the same number of
    photos, so no fixed share of the pauses is "long": the cut is the widest break between the
    sorted pauses by ratio, and a break far from TYPICAL_GAP_SECONDS needs to be wider to win
    (above it more so: the long pauses of a small crate spread from 25 s to 3 min, a wider
    break by ratio than the one between 10 s and 25 s). Simulated crates (tests) group right
    with this where Otsu's threshold, or a multiple of the median pause, did not."""
    ordered = sorted(pauses)
    best: tuple[float, int, float] | None = None
    for i, pause in enumerate(ordered):
        if pause <= MIN_GAP_SECONDS:
            continue
        low = max(ordered[i - 1], 1.0) if i else MIN_GAP_SECONDS
        cut = math.sqrt(low * pause)
        away = math.log(cut / TYPICAL_GAP_SECONDS)
        score = math.log(pause / low) - (0.5 * away if away > 0 else -0.2 * away)
        if best is None or score > best[0]:
            best = (score, i, max(cut, MIN_GAP_SECONDS))
    if best is None:
        return math.inf, (
            f"No pause between the photos was longer than {_span(MIN_GAP_SECONDS)}: they are "
            "all one record. Set the pause, or group by pattern."
        )
    _score, i, cut = best
    if i == 0:
        why = f"every pause between the photos was at least {_span(ordered[0])}"
    else:
        why = (
            f"within a record the photos were at most {_span(ordered[i - 1])} apart, "
            f"between records at least {_span(ordered[i])}"
        )
    unclear = (
        " The break is not clear: check the records, or set the pause."
        if i and ordered[i] < 1.5 * max(ordered[i - 1], 1.0)
        else ""
    )
    return cut, f"A new record starts after a pause of more than {_span(cut)}: {why}.{unclear}"


def _typed(runs: Sequence[Sequence[PhotoInfo]], types: Sequence[str]) -> list[Record]:
    return [
        Record(
            number,
            [
                SelectedPhoto(info, number, position, _type_at(position, types))
                for position, info in enumerate(run)
            ],
        )
        for number, run in enumerate(runs, 1)
        if run
    ]


def _type_at(position: int, types: Sequence[str]) -> str:
    return types[position] if position < len(types) else "other"


def _count_notes(records: Grouped) -> list[str]:
    """Records whose photo count is not the pattern's: where a split is most likely wrong."""
    if records.how is Grouping.NAMES or not records:
        return []
    size = len(records.pattern)
    odd = [r for r in records if len(r.photos) != size]
    if not odd:
        return []
    photos = sum(len(r.photos) for r in records)
    last = records[-1]
    if (
        records.how is Grouping.PATTERN
        and len(odd) == 1
        and odd[0] is last
        and len(last.photos) < size
    ):
        return [
            f"The {photos} photos do not make whole records of {size}: the last record "
            f"({last.number}) has {_photos(len(last.photos))}. Check that no photo is missing "
            "and that the pattern is right."
        ]
    shown = [f"{r.number} ({_photos(len(r.photos))})" for r in odd[:5]]
    if len(odd) > len(shown):
        shown.append(f"{len(odd) - len(shown)} more")
    which = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    usual, many = Counter(len(r.photos) for r in records).most_common(1)[0]
    hint = (
        f" (most have {usual}: is the pattern right?)"
        if usual != size and 2 * many > len(records)
        else ""
    )
    plural = len(odd) > 1
    return [
        f"Record{'s' if plural else ''} {which} {'do' if plural else 'does'} not have "
        f"{size} photos{hint}. If a photo is in the wrong record, move it."
    ]


def _photos(n: int) -> str:
    return f"{n} photo{'s' if n != 1 else ''}"


def _some(photos: Sequence[PhotoInfo]) -> str:
    """'IMG_1.jpg has' / 'IMG_1.jpg and 4 more have'."""
    first = photos[0].name
    return f"{first} has" if len(photos) == 1 else f"{first} and {len(photos) - 1} more have"


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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
            check_size(photo.size, index=index)
            sniff_mime(photo.info.head, index=index)
        except ScanbatchError as exc:
            raise SelectionError(f"{photo.name}: {exc.message}") from None
    try:
        parse_manifest(json.dumps(job.manifest()), len(job.photos))
    except ScanbatchError as exc:
        first = job.records[0].number
        raise SelectionError(f"Records from {first}: {exc.message}") from None
