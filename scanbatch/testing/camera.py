"""Photos as a phone leaves them: named by its counter (IMG_4101.jpg, IMG_4102.HEIC …, wrapping
after IMG_9999 to IMG_0001), with the capture time in EXIF DateTimeOriginal, taken a few seconds
apart within a record and after a longer pause between records. And `photo_info`, which reads
from a file on disk what the page's script reads in the browser (`PhotoInfo`), so tests can
stand in for the browser."""

from __future__ import annotations

import base64
import colorsys
import io
import os
import struct
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from scanbatch.images import register_heif
from scanbatch.workbench.grouping import HEAD_BYTES, PhotoInfo, parse_exif_time

EXIF_IFD = 0x8769  # the Exif sub-IFD, where DateTimeOriginal lives
DATE_TIME_ORIGINAL = 36867
DATE_TIME = 0x0132  # IFD0's "file changed" time; phones write both
EXIF_TIME_FORMAT = "%Y:%m:%d %H:%M:%S"
LARGE_BYTES = 2_000_000  # about what a phone's 12 MP JPEG weighs
START = datetime(2026, 11, 28, 10, 0, 0)

Span = float | tuple[float, float]


def camera_crate(
    folder: Path,
    records: int = 30,
    per_record: int | Sequence[int] = 3,
    *,
    heic_every: int | None = 4,
    start: datetime = START,
    seconds_apart: Span = (2.0, 12.0),
    minutes_between: Span = (0.5, 3.0),
    first_number: int = 4101,
    exif: bool = True,
    large: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write a crate's camera photos into `folder` and return their paths in the order taken.
    `per_record` is one count for every record or one per record; every `heic_every`-th photo
    is HEIC (None: none); spans are a fixed value or a (low, high) range drawn from; `exif=False`
    leaves the capture time out (file times are still set); `large` makes ~2 MB photos of noise
    (for upload benchmarks) instead of small coloured ones (fast)."""
    counts = [per_record] * records if isinstance(per_record, int) else list(per_record)
    if len(counts) != records:
        raise ValueError(f"per_record names {len(counts)} records, not {records}")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    photos: list[Path] = []
    taken, number = start, first_number
    for record, count in enumerate(counts):
        if record:
            taken += timedelta(minutes=_draw(rng, minutes_between))
        for position in range(count):
            if position:
                taken += timedelta(seconds=_draw(rng, seconds_apart))
            heic = bool(heic_every) and (len(photos) + 1) % (heic_every or 1) == 0
            path = folder / f"IMG_{number:04d}.{'HEIC' if heic else 'jpg'}"
            camera_photo(
                path,
                taken if exif else None,
                color=_record_color(record),
                label=f"record {record + 1} · {position + 1}",
                large=large,
                rng=rng,
            )
            # Phones keep the capture time as the file time when the photos are copied off.
            os.utime(path, (taken.timestamp(), taken.timestamp()))
            photos.append(path)
            number = number % 9999 + 1  # IMG_9999 is followed by IMG_0001
    return photos


def camera_photo(
    path: Path,
    taken: datetime | None,
    *,
    color: tuple[int, int, int] = (200, 60, 40),
    label: str = "",
    large: bool = False,
    rng: np.random.Generator | None = None,
) -> Path:
    """One photo at `path` (JPEG, or HEIC for a .heic/.heif name) with DateTimeOriginal set to
    `taken` (none when None)."""
    heic = path.suffix.lower() in (".heic", ".heif")
    if heic:
        register_heif()
    rng = rng if rng is not None else np.random.default_rng()
    if large and not heic:
        # Noise does not compress: 1600x1200 at quality 92 is about 1.9 MB.
        pixels = rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
    else:
        img = Image.new("RGB", (160, 120), color)
        if label:
            ImageDraw.Draw(img).text((8, 8), label, fill=(255, 255, 255))
    kwargs: dict[str, Any] = {"quality": 92 if large else 80}
    if taken is not None:
        kwargs["exif"] = _exif(taken)
    buf = io.BytesIO()
    img.save(buf, format="HEIF" if heic else "JPEG", **kwargs)
    data = buf.getvalue()
    if large and heic:
        # HEVC of 2 MB of noise takes seconds a photo; a `free` box (which every ISO-BMFF
        # reader skips) brings a small HEIC to the weight of a real one instead.
        pad = max(LARGE_BYTES - len(data), 8)
        data += struct.pack(">I", pad) + b"free" + bytes(pad - 8)
    path.write_bytes(data)
    return path


def photo_info(path: Path, index: int = 0) -> PhotoInfo:
    """What the page's script reads of a chosen file: name, size, first HEAD_BYTES, EXIF
    DateTimeOriginal, and the file's time (naive local, as the browser's `lastModified`)."""
    path = Path(path)
    stat = path.stat()
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    return PhotoInfo(
        index,
        path.name,
        stat.st_size,
        head,
        exif_taken(path),
        # The browser's File.lastModified is whole milliseconds.
        datetime.fromtimestamp(stat.st_mtime_ns // 1_000_000 / 1000),
    )


def photo_infos(paths: Sequence[Path]) -> list[PhotoInfo]:
    """`photo_info` of each file, indexed in the order given (the order of the selection)."""
    return [photo_info(p, i) for i, p in enumerate(paths)]


def browser_entry(path: Path) -> dict[str, Any]:
    """The JSON the page's script sends for one file (see `PhotoInfo.from_browser`)."""
    info = photo_info(path)
    taken = info.taken.strftime(EXIF_TIME_FORMAT) if info.taken else None
    return {
        "name": info.name,
        "size": info.size,
        "head": base64.b64encode(info.head).decode(),
        "taken": taken,
        "lastModified": Path(path).stat().st_mtime_ns // 1_000_000,
    }


def exif_taken(path: Path) -> datetime | None:
    """EXIF DateTimeOriginal of a JPEG or HEIC file, None when it has none (or is no image)."""
    if Path(path).suffix.lower() in (".heic", ".heif"):
        register_heif()
    try:
        with Image.open(path) as img:
            value = img.getexif().get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL)
    except Exception:
        return None
    return parse_exif_time(value)


def _exif(taken: datetime) -> bytes:
    exif = Image.Exif()
    stamp = taken.strftime(EXIF_TIME_FORMAT)
    exif[DATE_TIME] = stamp
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = stamp
    return exif.tobytes()


def _draw(rng: np.random.Generator, span: Span) -> float:
    if isinstance(span, tuple):
        low, high = span
        return float(rng.uniform(low, high))
    return float(span)


def _record_color(record: int) -> tuple[int, int, int]:
    """A record's own hue, so its photos look alike on the page and the next record's do not."""
    r, g, b = colorsys.hsv_to_rgb((record * 0.381966) % 1.0, 0.6, 0.75)
    return int(r * 255), int(g * 255), int(b * 255)
