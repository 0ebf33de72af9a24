"""JPEG thumbnails of job photos (HEIC included), made once and kept in the job folder, so a
page of photos never decodes an original twice."""

from __future__ import annotations

import base64
import html
import io
import os
import uuid
from pathlib import Path

from PIL import Image, ImageOps

from scanbatch.images import register_heif

JPEG_QUALITY = 85


def jpeg_thumbnail(data: bytes, size: int, quality: int = JPEG_QUALITY) -> bytes:
    """A JPEG whose longer side is at most `size` pixels, upright."""
    register_heif()
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
        img = ImageOps.exif_transpose(img)
        img.thumbnail((size, size))
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def inline_img(jpeg: bytes, title: str = "") -> str:
    """An HTML <img> carrying the JPEG itself, for notebooks and reports saved as one file."""
    data = base64.b64encode(jpeg).decode()
    return f'<img src="data:image/jpeg;base64,{data}" title="{html.escape(title)}">'


def cached_thumbnail(original: Path, size: int, cache_dir: Path) -> Path:
    """The thumbnail of `original` at `size`, made on first request and then read from
    `cache_dir`. Written to a unique temporary name first, so two requests racing for the
    same thumbnail never serve a half-written file."""
    target = cache_dir / f"{original.stem}_{size}.jpg"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{target.name}.{uuid.uuid4().hex}.tmp"
    tmp.write_bytes(jpeg_thumbnail(original.read_bytes(), size))
    os.replace(tmp, target)
    return target
