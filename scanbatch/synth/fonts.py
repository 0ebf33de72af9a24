"""Text rendering with fonts that ship inside installed packages, so that a fresh machine
renders the same pixels: Pillow's embedded Aileron (`ImageFont.load_default(size=...)`) and
OpenCV 5's embedded variable fonts (`cv2.FontFace("sans" | "italic" | "uni")`). Neither needs a
.ttf on disk. "Handwriting" is the italic face drawn letter by letter with a jittered angle,
baseline and size, and a thin wavering stroke (no handwriting font ships in a package we have).

Every function returns an RGBA image cropped to the ink, so callers can rotate and place it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageFont

RGB = tuple[int, int, int]


@lru_cache(maxsize=64)
def pil_font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(6, int(size)))  # type: ignore[return-value]


@lru_cache(maxsize=8)
def _cv_face(name: str) -> cv2.FontFace:
    return cv2.FontFace(name)


@dataclass(frozen=True)
class FontSpec:
    """A face and weight. `face` is "aileron" (Pillow) or an OpenCV face name."""

    face: str
    weight: int = 400  # 100..900; Aileron has one weight, so bold is a stroke
    condense: float = 1.0  # horizontal scale: < 1 condensed, > 1 extended


# Faces for cover and label typography; every one keeps letters OCR-legible.
COVER_FONTS = (
    FontSpec("aileron", 400),
    FontSpec("aileron", 700),
    FontSpec("aileron", 700, 0.85),
    FontSpec("sans", 400),
    FontSpec("sans", 700),
    FontSpec("sans", 900, 0.9),
    FontSpec("sans", 300, 1.1),
    FontSpec("italic", 500),
    FontSpec("uni", 400),
    FontSpec("uni", 700),
)
LABEL_FONTS = (
    FontSpec("aileron", 400),
    FontSpec("aileron", 700),
    FontSpec("sans", 500),
    FontSpec("sans", 700),
    FontSpec("uni", 400),
)


def _crop_mask(mask: np.ndarray, pad: int, rows: bool = True) -> np.ndarray:
    # Row/column maxima instead of np.nonzero: the latter dominated text rendering time.
    cols = np.flatnonzero(mask.max(axis=0))
    if cols.size == 0:
        return np.zeros((1, 1), np.uint8)
    x0, x1 = max(0, cols[0] - pad), min(mask.shape[1], cols[-1] + pad + 1)
    y0, y1 = 0, mask.shape[0]  # keep every row so that glyphs share a baseline
    if rows:
        ys = np.flatnonzero(mask.max(axis=1))
        y0, y1 = max(0, ys[0] - pad), min(mask.shape[0], ys[-1] + pad + 1)
    return mask[y0:y1, x0:x1]


def text_mask(text: str, spec: FontSpec, size: int, crop_rows: bool = True) -> np.ndarray:
    """8-bit coverage of `text` (255 = ink), cropped to the ink with a small margin."""
    size = max(6, int(size))
    width = int(len(text) * size * 1.3 + 2 * size)  # generous: wide glyphs must not clip
    height = int(size * 2.2)
    if spec.face == "aileron" and not text.isascii():
        # Pillow's embedded Aileron covers ASCII only (Ø, ö, ř come out as boxes); OpenCV's
        # sans covers Latin Extended, so names like "Søren Dvořák" stay readable.
        spec = FontSpec("sans", spec.weight, spec.condense)
    if spec.face == "aileron":
        img = Image.new("L", (width, height), 0)
        from PIL import ImageDraw

        stroke = max(1, size // 28) if spec.weight >= 600 else 0
        ImageDraw.Draw(img).text(
            (size // 2, size // 3), text, fill=255, font=pil_font(size),
            stroke_width=stroke, stroke_fill=255,
        )  # fmt: skip
        mask = np.asarray(img)
    else:
        mask = np.zeros((height, width), np.uint8)
        cv2.putText(mask, text, (size // 2, int(size * 1.45)), 255, _cv_face(spec.face), size,
                    spec.weight)  # fmt: skip
    mask = _crop_mask(mask, pad=max(2, size // 10) if crop_rows else 1, rows=crop_rows)
    if spec.condense != 1.0:
        h, w = mask.shape
        mask = cv2.resize(mask, (max(1, int(w * spec.condense)), h), interpolation=cv2.INTER_AREA)
    return mask


def colorize(mask: np.ndarray, color: RGB) -> Image.Image:
    rgba = np.empty((*mask.shape, 4), np.uint8)
    rgba[..., :3] = color
    rgba[..., 3] = mask
    return Image.fromarray(rgba, "RGBA")


def render_text(text: str, spec: FontSpec, size: int, color: RGB) -> Image.Image:
    return colorize(text_mask(text, spec, size), color)


def fit_size(text: str, spec: FontSpec, size: int, max_width: int) -> int:
    """The largest size <= `size` whose rendering of `text` fits in `max_width` pixels."""
    w = text_mask(text, spec, size).shape[1]
    if w <= max_width:
        return size
    return max(8, int(size * max_width / w * 0.97))


def handwriting_mask(text: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Letter-by-letter italic with jitter: legible, but irregular like a DJ's pen."""
    weight = int(rng.integers(300, 520))
    glyphs: list[np.ndarray | None] = []
    for ch in text:
        if ch == " ":
            glyphs.append(None)
            continue
        s = int(size * rng.uniform(0.9, 1.1))
        g = text_mask(ch, FontSpec("italic", weight), s, crop_rows=False)
        angle = rng.uniform(-7, 7)
        h, w = g.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        g = cv2.warpAffine(g, m, (w, h), flags=cv2.INTER_LINEAR)
        glyphs.append(g)
    height = int(size * 2.6)
    width = int(sum(size * 0.35 if g is None else g.shape[1] for g in glyphs) + size)
    canvas = np.zeros((height, width), np.uint8)
    x = size // 3
    drift = 0.0
    for g in glyphs:
        if g is None:
            x += int(size * rng.uniform(0.28, 0.42))
            continue
        drift += rng.normal(0, size * 0.015)  # the baseline wanders slowly
        # Glyph canvases put the baseline at the same row, so only the jitter moves it.
        y = int(size * 0.2 + drift + rng.normal(0, size * 0.03))
        y = min(max(0, y), height - g.shape[0])
        w = min(g.shape[1], width - x)
        canvas[y : y + g.shape[0], x : x + w] = np.maximum(
            canvas[y : y + g.shape[0], x : x + w], g[:, :w]
        )
        x += g.shape[1] + int(size * rng.uniform(-0.02, 0.05))
    return _crop_mask(canvas, pad=max(2, size // 8))


def render_handwriting(text: str, size: int, color: RGB, rng: np.random.Generator) -> Image.Image:
    return colorize(handwriting_mask(text, size, rng), color)
