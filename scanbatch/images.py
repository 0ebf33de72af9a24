"""Image type detection from the bytes (never the filename) and the per-file size limit."""

from __future__ import annotations

from scanbatch.errors import BadRequest

MAX_IMAGE_BYTES = 10 * 1024 * 1024

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
