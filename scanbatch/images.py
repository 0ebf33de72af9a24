"""Image type detection from the bytes (never the filename), the per-file size limit, and the
pixel limit read from the image's header (never by decoding it)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

from scanbatch.errors import BadRequest

MAX_IMAGE_BYTES = 10 * 1024 * 1024
# 50 megapixels: a 48 MP phone photo (8064x6048) passes, the app sends at most 2048 px a side.
# A small file can declare a huge canvas (a 46 KB 1-bit PNG of 13000x13000 took an OCR kernel
# to 1.1 GiB), so the bytes limit alone does not bound memory.
MAX_IMAGE_PIXELS = 50_000_000

EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "image/heif": ".heif",
}

# ISO-BMFF brands (bytes 8..12 of the `ftyp` box) of HEIC and HEIF files.
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"mif2", b"avic"}

SNIFF_BYTES = 32

# The only thumbnail sizes made (longer side, px); a request is rounded up to one of them, so
# a photo has at most this many thumbnails on disk. 160 and 1200 are what the workbench's
# review tab asks for (its strip and its large view); 2048 is the most the app sends.
THUMBNAIL_SIZES = (160, 320, 640, 1200, 2048)


@functools.cache
def register_heif() -> None:
    """Teach Pillow to open HEIC/HEIF (pillow-heif applies the EXIF rotation itself). Imported
    only when a HEIC photo is met: pillow-heif loads libheif."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def detect_mime(head: bytes) -> str | None:
    """The MIME type of an image from its first bytes, or None when it is not one we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIC_BRANDS:
            return "image/heic"
        if brand in _HEIF_BRANDS:
            return "image/heif"
        # Compatible brands follow the major brand and minor version, 4 bytes each.
        compatible = {head[i : i + 4] for i in range(16, min(len(head), 32) - 3, 4)}
        if compatible & _HEIC_BRANDS:
            return "image/heic"
        if compatible & _HEIF_BRANDS:
            return "image/heif"
    return None


def sniff_mime(data: bytes, *, index: int | None) -> str:
    """Like `detect_mime` but raises a 400 naming the file (0-based index in the upload)."""
    mime = detect_mime(data[:SNIFF_BYTES])
    if mime is None:
        where = f"images[{index}]" if index is not None else "file"
        raise BadRequest(
            f"{where} is not a supported image: send JPEG, PNG, WebP or HEIC/HEIF "
            "(the type is read from the file's bytes, not its name)"
        )
    return mime


def check_size(size: int, *, index: int) -> None:
    if size > MAX_IMAGE_BYTES:
        from scanbatch.errors import PayloadTooLarge

        raise PayloadTooLarge(
            f"images[{index}] is {size} bytes; each file must be at most "
            f"{MAX_IMAGE_BYTES} bytes (10 MiB): resize or recompress it"
        )


def check_pixels(path: Path, mime: str, *, index: int | None) -> tuple[int, int]:
    """(width, height) from the file's header, or a 400 naming the file when it declares more
    than MAX_IMAGE_PIXELS or its header cannot be read. Nothing is decoded: Pillow's `open`
    reads only the header."""
    from PIL import Image

    if mime in ("image/heic", "image/heif"):
        register_heif()
    where = f"images[{index}]" if index is not None else str(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own limit and raises past twice it; ours is lower.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except Image.DecompressionBombError:
        width = height = None
    except Exception as exc:
        raise BadRequest(
            f"{where} looks like {mime} but its header cannot be read ({type(exc).__name__}): "
            "send the photo as saved by the camera or an image editor"
        ) from None
    if width is None or width * height > MAX_IMAGE_PIXELS:
        size = f"{width}x{height} pixels" if width else "more pixels than Pillow will open"
        raise BadRequest(
            f"{where} is {size}; each photo may have at most {MAX_IMAGE_PIXELS:,} pixels "
            "(50 megapixels): downscale it (the app sends at most 2048 px a side)"
        )
    return width, height
