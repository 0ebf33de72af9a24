"""Small real images in every accepted format, made with Pillow (and pillow-heif for HEIC)."""

from __future__ import annotations

import io

from PIL import Image


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (32, 24), color: str = "red") -> bytes:
    img = Image.new("RGB", size, color)
    buf = io.BytesIO()
    if fmt == "HEIF":
        from scanbatch.images import register_heif

        register_heif()
    img.save(buf, format=fmt)
    return buf.getvalue()


def png_header(width: int, height: int, bit_depth: int = 1, color_type: int = 0) -> bytes:
    """A PNG that declares `width`x`height` with one tiny IDAT: enough for a header reader,
    and nothing a test has to allocate (a decoder would need width*height bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
