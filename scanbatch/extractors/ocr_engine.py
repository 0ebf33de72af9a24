"""The OCR extractor's readers: image decoding, the shared RapidOCR engine and zxing-cpp.

One RapidOCR engine per process, created on first use. Its onnxruntime sessions are safe to
call from several threads, but `RapidOCR.__call__` and `TextDetector.__call__` store per-call
state on the instance (`update_params`, `preprocess_op`), so calls are serialised with a lock.
That costs nothing on the 2-core target: onnxruntime's intra-op pool already uses every core
for one image, and a second concurrent image would only contend for them. The pipeline's item
threads still overlap everything else (decoding, barcodes, heuristics) with the OCR of others.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from scanbatch.errors import ExtractionError
from scanbatch.images import register_heif
from scanbatch.models import Photo

_engines: dict[int, Any] = {}  # by detector size; one in practice (the extractor's option)
_engine_lock = threading.Lock()  # guards creation
_call_lock = threading.Lock()  # serialises OCR calls (see the module docstring)

DEFAULT_DET_SIDE = 960


@dataclass(frozen=True)
class OcrLine:
    """One detected text line, in the coordinates of the (downscaled) image that was read."""

    text: str
    score: float
    box: tuple[tuple[float, float], ...]  # four corners, clockwise from top-left

    @property
    def height(self) -> float:
        # Mean of the two vertical edges: robust to slightly rotated boxes.
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = self.box
        return (np.hypot(x3 - x0, y3 - y0) + np.hypot(x2 - x1, y2 - y1)) / 2

    @property
    def width(self) -> float:
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = self.box
        return (np.hypot(x1 - x0, y1 - y0) + np.hypot(x2 - x3, y2 - y3)) / 2

    @property
    def center(self) -> tuple[float, float]:
        xs = [p[0] for p in self.box]
        ys = [p[1] for p in self.box]
        return sum(xs) / 4, sum(ys) / 4

    @property
    def top(self) -> float:
        return min(p[1] for p in self.box)

    @property
    def bottom(self) -> float:
        return max(p[1] for p in self.box)

    @property
    def left(self) -> float:
        return min(p[0] for p in self.box)

    @property
    def right(self) -> float:
        return max(p[0] for p in self.box)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "score": round(self.score, 4),
            "box": [[round(x, 1), round(y, 1)] for x, y in self.box],
        }


@dataclass(frozen=True)
class BarcodeRead:
    text: str
    format: str
    valid: bool  # False when zxing-cpp read the bars but the checksum failed

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "format": self.format, "valid": self.valid}


@cache
def versions() -> str:
    """`rapidocr-<v>+zxing-cpp-<v>` for `Usage.model`."""

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:  # pragma: no cover - both are dependencies
            return "unknown"

    return f"rapidocr-{v('rapidocr')}+zxing-cpp-{v('zxing-cpp')}"


def decode_photo(photo: Photo, position: int) -> Image.Image:
    """The photo as an upright RGB image; an `ExtractionError` naming the photo otherwise."""
    register_heif()
    try:
        with Image.open(io.BytesIO(photo.data)) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ExtractionError(
            f"photo {position + 1} ({photo.photo_type}, {photo.mime_type}) could not be decoded "
            f"as an image: {exc}. Send a JPEG, PNG, WebP or HEIC photo.",
            code="bad_image",
            retryable=False,
        ) from exc


def downscale(img: Image.Image, max_side: int) -> Image.Image:
    """Shrink so that the longer side is at most `max_side`; OCR time grows with the area and
    the text on a record is legible well below phone resolution."""
    w, h = img.size
    if max(w, h) <= max_side:
        return img
    scale = max_side / max(w, h)
    return img.resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS
    )


def _get_engine(det_side: int) -> Any:
    engine = _engines.get(det_side)
    if engine is None:
        with _engine_lock:
            engine = _engines.get(det_side)
            if engine is None:
                from rapidocr import RapidOCR

                threads = max(1, min(os.cpu_count() or 1, 4))
                # Only the models that ship in the wheel (the default config); never a download.
                # The detector works at most at `det_side` (RapidOCR's default instead upsizes
                # every photo to a 736 px *shorter* side): detection is most of the time, and
                # 960 px still finds the small type of a center label. Recognition reads its
                # crops from the photo as passed (up to `max_side`).
                engine = RapidOCR(
                    params={
                        "Global.log_level": "error",
                        "Det.limit_type": "max",
                        "Det.limit_side_len": det_side,
                        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                    }
                )
                _engines[det_side] = engine
    return engine


def warm_up(det_side: int = DEFAULT_DET_SIDE) -> None:
    """Create the engine and load its models now instead of on the first photo."""
    read_text(Image.new("RGB", (64, 32), "white"), det_side=det_side)


def read_text(img: Image.Image, det_side: int = DEFAULT_DET_SIDE) -> list[OcrLine]:
    """Every text line RapidOCR finds, in its reading order (top to bottom, left to right)."""
    engine = _get_engine(det_side)
    bgr = np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])
    with _call_lock:
        result = engine(bgr)
    if result is None or getattr(result, "txts", None) is None or result.boxes is None:
        return []
    lines = []
    for text, score, box in zip(result.txts, result.scores, result.boxes, strict=False):
        text = " ".join(str(text).split())
        if text:
            corners = tuple((float(x), float(y)) for x, y in np.asarray(box).tolist())
            lines.append(OcrLine(text=text, score=float(score), box=corners))
    return lines


def read_barcodes(img: Image.Image) -> list[BarcodeRead]:
    """EAN/UPC barcodes on the photo, including ones whose checksum failed (marked invalid),
    because a misprinted or misread code is still evidence, just weaker."""
    import zxingcpp

    formats = zxingcpp.barcode_formats_from_str("EAN13,EAN8,UPCA,UPCE")
    gray = np.asarray(img.convert("L"))
    found = zxingcpp.read_barcodes(gray, formats=formats, return_errors=True)
    reads = []
    for b in found:
        if not b.text:
            continue
        error = getattr(b, "error", None)
        reads.append(BarcodeRead(text=b.text, format=str(b.format.name), valid=not error))
    return reads
