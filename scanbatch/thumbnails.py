"""JPEG thumbnails of job photos (HEIC included), made once and kept in the job folder, so a
page of photos never decodes an original twice."""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import threading
import uuid
import warnings
from pathlib import Path

from PIL import Image, ImageOps

from scanbatch.diskspace import is_disk_full
from scanbatch.errors import Unprocessable
from scanbatch.images import MAX_IMAGE_PIXELS, THUMBNAIL_SIZES, register_heif
from scanbatch.jobfolder import JobFolder

log = logging.getLogger(__name__)
JPEG_QUALITY = 85
# Decodes at once, across every request thread: each may hold a whole decoded photo (a PNG,
# WebP or HEIC has no reduced-scale decode; up to 4 bytes a pixel of MAX_IMAGE_PIXELS).
_DECODES = threading.BoundedSemaphore(2)


def _open(data: bytes) -> Image.Image:
    """The image, header read only; past twice Pillow's own limit Pillow refuses to open it,
    which is a photo too large as well."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise Unprocessable(
            f"The photo has more than the {MAX_IMAGE_PIXELS:,} pixels a thumbnail is made "
            "from: download the original instead (no size=)"
        ) from None


def thumbnail_size(requested: int) -> int:
    """The fixed size a request for `requested` px is served at: the smallest that is at least
    as large, or the largest. A photo then has at most len(THUMBNAIL_SIZES) thumbnails."""
    return next((s for s in THUMBNAIL_SIZES if s >= requested), THUMBNAIL_SIZES[-1])


def jpeg_thumbnail(data: bytes, size: int, quality: int = JPEG_QUALITY) -> bytes:
    """A JPEG whose longer side is at most `size` pixels, upright. Memory stays bounded
    whatever the format: the canvas is checked from the header before anything is decoded,
    a JPEG is decoded at a reduced scale, and the rotation is applied to the small image."""
    register_heif()
    with _DECODES, _open(data) as img:
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            # The upload refuses these from the header; a file that got here anyway (an older
            # store, a dataset) must not take the server's memory with it.
            raise Unprocessable(
                f"The photo is {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                "a thumbnail is made from: download the original instead (no size=)"
            )
        img.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        img.thumbnail((size, size), reducing_gap=2.0)  # a cheap reduce() first, then resample
        small = ImageOps.exif_transpose(img)
        out = io.BytesIO()
        small.convert("RGB").save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def inline_img(jpeg: bytes, title: str = "") -> str:
    """An HTML <img> carrying the JPEG itself, for notebooks and reports saved as one file."""
    data = base64.b64encode(jpeg).decode()
    return f'<img src="data:image/jpeg;base64,{data}" title="{html.escape(title)}">'


def cached_thumbnail(original: Path, size: int, folder: JobFolder) -> Path | io.BytesIO:
    """The thumbnail of `original` (a photo of the job in `folder`) at `thumbnail_size(size)`,
    made on first request and then read from the folder's thumbnails. Written to a unique
    temporary name first, so two requests racing for the same thumbnail never serve a
    half-written file.

    On a full disk the thumbnail is served from memory and not kept (made again next time):
    a reviewer asked to see the photo, and a thumbnail needs no space to be shown. A 507 would
    leave the review page without its photos, and the original instead may be a HEIC no
    browser shows, or megabytes for a page of small pictures."""
    size = thumbnail_size(size)
    target = folder.thumbnail_path(original, size)
    if target.exists():
        return target
    jpeg = jpeg_thumbnail(original.read_bytes(), size)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(jpeg)
        os.replace(tmp, target)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        log.warning("not keeping the thumbnail %s: %s", target, exc)
        return io.BytesIO(jpeg)
    finally:
        tmp.unlink(missing_ok=True)  # a partial one, never renamed into place
    return target
