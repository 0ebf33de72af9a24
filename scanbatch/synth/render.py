"""Flat artwork of a record, one function per photo type: front cover, center label, back
cover and review sticker. Each returns a square RGB image (the thing itself, not yet
photographed; see distort.py). Text is placed where a designer would put it, in contrasting
colours, so that the fields stay legible at the default difficulty."""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image, ImageDraw

from scanbatch.synth.barcode import render_barcode
from scanbatch.synth.fonts import (
    COVER_FONTS,
    LABEL_FONTS,
    RGB,
    FontSpec,
    fit_size,
    render_handwriting,
    render_text,
)
from scanbatch.synth.records import Record

SIZE = 1100  # artwork side in pixels; photos are 1000-1400 px so text keeps its size
STATIONS = ("WSBR 88.7 FM", "KRDO 90.3", "WXCR 91.1 FM", "KZSB 89.5")


def _rand_color(rng: np.random.Generator, light: bool | None = None) -> RGB:
    hue = rng.uniform(0, 180)
    sat = rng.uniform(40, 230)
    if light is None:
        val = rng.uniform(40, 250)
    else:
        val = rng.uniform(200, 255) if light else rng.uniform(20, 90)
        sat = sat * (0.5 if light else 1.0)
    hsv = np.uint8([[[hue, sat, val]]])
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def luminance(c: RGB | np.ndarray) -> float:
    c = np.asarray(c, np.float32)
    return float((0.299 * c[..., 0] + 0.587 * c[..., 1] + 0.114 * c[..., 2]).mean())


def _contrast_color(bg_lum: float, rng: np.random.Generator) -> RGB:
    """A text colour at least ~110 luminance levels away from the background."""
    for _ in range(20):
        c = _rand_color(rng, light=bg_lum < 128)
        if abs(luminance(c) - bg_lum) > 110:
            return c
    return (250, 250, 245) if bg_lum < 128 else (15, 15, 20)


def background(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Gradients, shapes and low-frequency noise, as cover art."""
    kind = rng.choice(["linear", "radial", "shapes", "noise", "stripes"])
    c1 = np.array(_rand_color(rng), np.float32)
    c2 = np.array(_rand_color(rng), np.float32)
    # The gradient is computed on a coarse grid and scaled up: smooth anyway, and fast.
    g = 128
    yy, xx = np.mgrid[0:g, 0:g].astype(np.float32) / g
    if kind == "linear":
        a = rng.uniform(0, math.pi)
        t = (xx * math.cos(a) + yy * math.sin(a)) / (abs(math.cos(a)) + abs(math.sin(a)))
    elif kind == "radial":
        cx, cy = rng.uniform(0.2, 0.8, 2)
        t = np.clip(np.hypot(xx - cx, yy - cy) / 0.9, 0, 1)
    elif kind == "noise":
        low = rng.random((6, 6)).astype(np.float32)
        t = cv2.resize(low, (g, g), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    elif kind == "stripes":
        a = rng.uniform(0, math.pi)
        f = rng.uniform(3, 9)
        wave = np.sin((xx * math.cos(a) + yy * math.sin(a)) * f * math.pi)
        t = 0.5 + 0.5 * np.clip(wave * 4, -1, 1)  # hard-ish but anti-aliased edges
        t = t * 0.35  # keep stripes tame: strong stripes would hide the text
    else:
        t = np.zeros_like(xx)
    # Nearest keeps the stripes' hard edges; linear keeps gradients smooth.
    interp = cv2.INTER_NEAREST if kind == "stripes" else cv2.INTER_LINEAR
    small = (c1 + (c2 - c1) * t[..., None]).clip(0, 255).astype(np.uint8)
    img = cv2.resize(small, (size, size), interpolation=interp)
    if kind == "shapes" or rng.random() < 0.4:
        for _ in range(int(rng.integers(2, 7))):
            col = tuple(int(v) for v in _rand_color(rng))
            cx, cy = (int(v) for v in rng.integers(0, size, 2))
            if rng.random() < 0.5:
                cv2.circle(img, (cx, cy), int(rng.integers(40, size // 3)), col, -1, cv2.LINE_AA)
            else:
                w, h = (int(v) for v in rng.integers(40, size // 2, 2))
                cv2.rectangle(img, (cx, cy), (cx + w, cy + h), col, -1)
    return img  # no grain here: the photograph adds sensor noise to everything


def _place_text(
    canvas: Image.Image,
    text: str,
    spec: FontSpec,
    size: int,
    x: float,
    y: int,
    max_width: int,
    rng: np.random.Generator,
    align: str = "center",
    color: RGB | None = None,
    panel: bool | None = None,
) -> tuple[int, int]:
    """Draws `text` with its top at `y`, horizontally at `x` per `align` ("left" = x is the
    left edge, "center" = x is the centre). Picks a contrasting colour from the pixels
    underneath, and a backing panel when they are busy. Returns the drawn (width, height)."""
    size = fit_size(text, spec, size, max_width)
    probe = render_text(text, spec, size, (0, 0, 0))
    w, h = probe.size
    left = int(x - w / 2) if align == "center" else int(x)
    left = max(0, min(canvas.width - w, left))
    under = np.asarray(canvas.crop((left, y, left + w, y + h)))
    bg_lum = luminance(under)
    busy = panel if panel is not None else float(under.std()) > 38
    if busy:
        # A solid band behind the title, as designers do over photos.
        band = _rand_color(rng, light=bg_lum >= 128)
        pad = max(6, size // 5)
        ImageDraw.Draw(canvas).rectangle((left - pad, y - pad, left + w + pad, y + h + pad), band)
        bg_lum = luminance(band)
    if color is None or abs(luminance(color) - bg_lum) < 110:
        color = _contrast_color(bg_lum, rng)
    text_img = render_text(text, spec, size, color)
    canvas.paste(text_img, (left, y), text_img)
    return w, h


def _fit_lines(text: str, spec: FontSpec, size: int, max_width: int) -> tuple[list[str], int]:
    """One line when it fits at a decent size, else two lines split near the middle."""
    fitted = fit_size(text, spec, size, max_width)
    words = text.split()
    if fitted >= size * 0.7 or len(words) < 2:
        return [text], fitted
    best = min(range(1, len(words)), key=lambda k: abs(len(" ".join(words[:k])) - len(text) / 2))
    lines = [" ".join(words[:best]), " ".join(words[best:])]
    return lines, min(fit_size(line, spec, size, max_width) for line in lines)


def front_cover(rec: Record, rng: np.random.Generator) -> tuple[Image.Image, set[str]]:
    """Returns the cover and the fields it shows."""
    canvas = Image.fromarray(background(rng))
    s = SIZE
    font_a = COVER_FONTS[int(rng.integers(len(COVER_FONTS)))]
    font_t = COVER_FONTS[int(rng.integers(len(COVER_FONTS)))]
    artist = rec.artist.upper() if rng.random() < 0.35 else rec.artist
    title = rec.title.upper() if rng.random() < 0.2 else rec.title
    a_size = int(s * rng.uniform(0.065, 0.10))
    t_size = int(s * rng.uniform(0.05, 0.08))
    align = str(rng.choice(["left", "center", "center"]))
    x = s * 0.07 if align == "left" else s / 2
    max_w = int(s * 0.86)
    layout = rng.choice(["top", "bottom", "split", "center"])
    a_lines, a_size = _fit_lines(artist, font_a, a_size, max_w)
    t_lines, t_size = _fit_lines(title, font_t, t_size, max_w)
    block_a = int(len(a_lines) * a_size * 1.35)
    block_t = int(len(t_lines) * t_size * 1.35)
    gap = int(s * 0.02)
    if layout == "top":
        ya, yt = int(s * 0.07), int(s * 0.07) + block_a + gap
    elif layout == "bottom":
        yt = int(s * 0.92) - block_t
        ya = yt - gap - block_a
    elif layout == "split":
        ya, yt = int(s * 0.07), int(s * 0.92) - block_t
    else:
        ya = int(s / 2 - (block_a + gap + block_t) / 2)
        yt = ya + block_a + gap
    color = None
    for line in a_lines:
        _place_text(canvas, line, font_a, a_size, x, ya, max_w, rng, align, color)
        ya += int(a_size * 1.35)
    for line in t_lines:
        _place_text(canvas, line, font_t, t_size, x, yt, max_w, rng, align)
        yt += int(t_size * 1.35)
    shown = {"artistName", "albumTitle"}
    if rng.random() < 0.3:  # the label's logo in a corner
        corner_y = int(s * 0.02) if layout in ("bottom", "center") else int(s * 0.93)
        _place_text(canvas, rec.label, LABEL_FONTS[1], int(s * 0.035), s * 0.9, corner_y,
                    int(s * 0.3), rng, "center", panel=True)  # fmt: skip
        shown.add("labelName")
    return canvas, shown


def _chord(radius: float, dy: float) -> int:
    return int(2 * math.sqrt(max(0.0, radius * radius - dy * dy)))


def center_label(rec: Record, rng: np.random.Generator) -> tuple[Image.Image, set[str]]:
    s = SIZE
    c = s // 2
    img = np.zeros((s, s, 3), np.uint8)
    img[:] = (int(rng.integers(150, 230)),) * 3  # the turntable mat / table around the disc
    cv2.circle(img, (c, c), int(s * 0.49), (14, 14, 16), -1, cv2.LINE_AA)
    for r in range(int(s * 0.37), int(s * 0.485), 3):  # grooves catch a little light
        g = int(rng.integers(16, 34))
        cv2.circle(img, (c, c), r, (g, g, g + 2), 1, cv2.LINE_AA)
    radius = s * rng.uniform(0.34, 0.37)
    label_col = _rand_color(rng, light=bool(rng.random() < 0.6))
    cv2.circle(img, (c, c), int(radius), label_col, -1, cv2.LINE_AA)
    canvas = Image.fromarray(img)
    ink = _contrast_color(luminance(label_col), rng)
    font = LABEL_FONTS[int(rng.integers(len(LABEL_FONTS)))]
    bold = FontSpec(font.face, 700)
    side = str(rng.choice(["A", "B"]))
    tracks = rec.tracks_a if side == "A" else rec.tracks_b

    def line(text: str, rel_y: float, size_rel: float, spec: FontSpec = font) -> None:
        y = int(c + rel_y * radius)
        size = int(radius * size_rel)
        # The text must fit the chord at both its top and its bottom edge.
        dy = max(abs(y - c), abs(y + size * 1.3 - c))
        width = int(_chord(radius, dy) * 0.86)
        if width > size:
            _place_text(canvas, text, spec, size, c, y, width, rng, "center", ink, panel=False)

    line(rec.label, -0.78, 0.17, bold)
    line(rec.catalog_number, -0.46, 0.12, bold)
    # Side and speed flank the spindle hole.
    for text, dx in ((f"SIDE {side}", -0.55), (str(rng.choice(["33 1/3 RPM", "STEREO"])), 0.55)):
        t = render_text(text, font, int(radius * 0.075), ink)
        canvas.paste(t, (int(c + dx * radius - t.width / 2), c - t.height // 2), t)
    line(rec.artist, 0.2, 0.11, bold)
    line(rec.title, 0.38, 0.095)
    for i, name in enumerate(tracks[:3]):
        line(f"{i + 1}. {name}", 0.56 + i * 0.105, 0.065)
    draw = ImageDraw.Draw(canvas)
    hole = s * 0.018
    draw.ellipse((c - hole, c - hole, c + hole, c + hole), fill=(30, 30, 30))
    return canvas, {"artistName", "albumTitle", "labelName", "catalogNumber"}


def back_cover(rec: Record, rng: np.random.Generator) -> tuple[Image.Image, set[str]]:
    s = SIZE
    dark = rng.random() < 0.25
    base = np.array(_rand_color(rng, light=not dark), np.float32)
    texture = rng.standard_normal((s, s), dtype=np.float32)[..., None] * 4
    canvas = Image.fromarray(np.clip(base + texture, 0, 255).astype(np.uint8))
    ink = _contrast_color(luminance(tuple(int(v) for v in base)), rng)
    font = LABEL_FONTS[int(rng.integers(len(LABEL_FONTS)))]
    bold = FontSpec(font.face, 700)
    m = int(s * 0.07)
    y = m
    _, h = _place_text(canvas, rec.artist, bold, int(s * 0.05), m, y, s - 2 * m, rng, "left", ink,
                       panel=False)  # fmt: skip
    y += h + int(s * 0.015)
    _, h = _place_text(canvas, rec.title, font, int(s * 0.04), m, y, s - 2 * m, rng, "left", ink,
                       panel=False)  # fmt: skip
    y += h + int(s * 0.06)
    size = int(s * 0.027)
    for col, (side, tracks) in enumerate((("A", rec.tracks_a), ("B", rec.tracks_b))):
        x = m + col * (s // 2 - m // 2)
        ty = y
        _place_text(canvas, f"SIDE {side}", bold, size, x, ty, s // 2 - m, rng, "left", ink,
                    panel=False)  # fmt: skip
        ty += int(size * 1.8)
        for i, name in enumerate(tracks):
            minutes = f"{int(rng.integers(2, 7))}:{int(rng.integers(0, 60)):02d}"
            _place_text(canvas, f"{side}{i + 1}  {name}  {minutes}", font, size, x, ty,
                        s // 2 - m, rng, "left", ink, panel=False)  # fmt: skip
            ty += int(size * 1.6)
    # Bottom: the barcode box on the right, label and catalog number on the left.
    bar = render_barcode(rec.upc, module_px=3, bar_height=int(s * 0.09))
    bx, by = s - m - bar.width, s - m - bar.height
    canvas.paste(bar, (bx, by))
    fine = int(s * 0.02)
    _place_text(canvas, f"(P) {rec.year} {rec.label}. All rights reserved.", font, fine, m,
                s - m - fine * 2, bx - 2 * m, rng, "left", ink, panel=False)  # fmt: skip
    _place_text(canvas, rec.catalog_number, bold, int(s * 0.034), m, s - m - fine * 5,
                bx - 2 * m, rng, "left", ink, panel=False)  # fmt: skip
    return canvas, {"artistName", "albumTitle", "labelName", "catalogNumber", "upc"}


def sticker(rec: Record, rng: np.random.Generator) -> tuple[Image.Image, set[str]]:
    """A close-up of the station's review sticker on the shrink wrap."""
    s = SIZE
    canvas = Image.fromarray(background(rng))
    paper = [(250, 250, 245), (255, 246, 200), (255, 235, 120), (250, 200, 220), (210, 245, 200)]
    col = paper[int(rng.integers(len(paper)))]
    w, h = int(s * rng.uniform(0.78, 0.88)), int(s * rng.uniform(0.5, 0.62))
    sheet = Image.new("RGB", (w, h), col)
    pen: RGB = [(25, 35, 140), (20, 20, 25), (40, 40, 90), (120, 20, 30)][int(rng.integers(4))]
    # The station's printed header and its library code (never a catalog number).
    header = render_text(str(rng.choice(STATIONS)) + " LIBRARY", FontSpec("aileron", 700),
                         int(s * 0.03), (70, 70, 70))  # fmt: skip
    sheet.paste(header, (int(w * 0.05), int(h * 0.05)), header)
    code = render_handwriting(rec.library_code, int(s * 0.065), pen, rng)
    sheet.paste(code, (w - code.width - int(w * 0.05), int(h * 0.03)), code)
    y = int(h * 0.05) + max(header.height, code.height) + int(h * 0.04)
    size = int(s * rng.uniform(0.05, 0.06))
    for text in rec.review:
        hand = render_handwriting(text, size, pen, rng)
        if hand.width > w * 0.9:
            hand = hand.resize((int(w * 0.9), int(hand.height * w * 0.9 / hand.width)))
        sheet.paste(hand, (int(w * 0.05 + rng.uniform(0, w * 0.04)), y), hand)
        y += int(hand.height * 1.05)
        if y > h - size:
            break
    # RGBA so that the corners uncovered by the rotation stay transparent.
    sheet = sheet.convert("RGBA").rotate(
        rng.uniform(-5, 5), resample=Image.Resampling.BICUBIC, expand=True
    )
    canvas.paste(sheet, ((s - sheet.width) // 2, (s - sheet.height) // 2), sheet)
    return canvas, {"reviewText"}


RENDERERS = {
    "front_cover": front_cover,
    "center_label": center_label,
    "back_cover": back_cover,
    "sticker": sticker,
}
