"""Photographing flat artwork: the record on a table, seen at a slight angle, with the blur,
glare, sensor noise and compression of a phone photo. Strength comes from a difficulty
preset; the default is realistic but moderate, so that an OCR can read the main fields."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from scanbatch.images import register_heif


@dataclass(frozen=True)
class Difficulty:
    max_rotation: float  # degrees
    perspective: float  # corner jitter as a share of the side
    blur: tuple[float, float]  # Gaussian sigma range
    noise: float  # sensor noise sigma
    glare_prob: float
    glare_strength: float  # peak added brightness, 0..1
    jpeg_quality: tuple[int, int]  # HEIC uses a lower number for the same look
    heic_share: float
    label_spin: float  # extra rotation of center labels (they sit at any angle)
    fill: tuple[float, float]  # share of the frame the record covers


DIFFICULTIES = {
    "easy": Difficulty(2.0, 0.01, (0.3, 0.6), 2.0, 0.0, 0.0, (85, 92), 0.0, 3.0, (0.85, 0.93)),
    "default": Difficulty(5.0, 0.03, (0.5, 1.0), 4.0, 0.3, 0.28, (75, 88), 0.06, 8.0, (0.8, 0.92)),
    "hard": Difficulty(15.0, 0.07, (0.8, 2.0), 9.0, 0.6, 0.5, (55, 78), 0.25, 180.0, (0.65, 0.85)),
}


def _table(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Wood, desk grey or a carpet-ish colour with low-frequency shading."""
    base = np.array(
        [(120, 85, 55), (150, 110, 70), (90, 90, 95), (200, 200, 195), (60, 60, 70)][
            int(rng.integers(5))
        ],
        np.float32,
    )
    # Computed small and scaled up: the shading is smooth, and this keeps 200 items fast.
    low = cv2.resize(rng.random((4, 4)).astype(np.float32), (64, 64), interpolation=cv2.INTER_CUBIC)
    streaks = cv2.resize(rng.random((1, 64)).astype(np.float32), (64, 64))  # wood grain
    shade = 0.8 + 0.3 * low + 0.1 * streaks
    small = (base * shade[..., None]).clip(0, 255).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def photograph(
    art: Image.Image, rng: np.random.Generator, diff: Difficulty, spin: bool = False
) -> Image.Image:
    """The artwork photographed: returns an RGB image, 1000-1400 px on the long side."""
    long_side = int(rng.integers(1000, 1401))
    aspect = [1.0, 4 / 3, 3 / 4][int(rng.integers(3))]
    w, h = (long_side, int(long_side / aspect)) if aspect >= 1 else (
        int(long_side * aspect), long_side)  # fmt: skip
    frame = _table(rng, w, h)
    src = np.asarray(art if art.mode == "RGB" else art.convert("RGB"))
    side = min(w, h) * rng.uniform(*diff.fill)
    angle = rng.uniform(-diff.max_rotation, diff.max_rotation)
    if spin:
        angle += rng.uniform(-diff.label_spin, diff.label_spin)
    cx = w / 2 + rng.uniform(-0.04, 0.04) * w
    cy = h / 2 + rng.uniform(-0.04, 0.04) * h
    half = side / 2
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]], np.float32)
    corners += rng.uniform(-diff.perspective, diff.perspective, (4, 2)).astype(np.float32) * side
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    dst = corners @ rot.T + np.array([cx, cy], np.float32)
    sh, sw = src.shape[:2]
    src_pts = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float32)
    m = cv2.getPerspectiveTransform(src_pts, dst.astype(np.float32))
    # Drawn straight onto the table: the transparent border leaves the table where the
    # record is not (one pass, no float compositing: this is the hot loop of a 200-item set).
    cv2.warpPerspective(src, m, (w, h), dst=frame, flags=cv2.INTER_AREA,
                        borderMode=cv2.BORDER_TRANSPARENT)  # fmt: skip
    img = frame

    # Light maps are smooth, so they are computed on a 64x64 grid and scaled up (speed).
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) / 63
    g = rng.uniform(-1, 1, 2)
    light = 1 + 0.08 * (g[0] * (xx - 0.5) + g[1] * (yy - 0.5))  # uneven room light
    glare = np.zeros_like(light)
    if rng.random() < diff.glare_prob:
        # A soft specular highlight from a ceiling lamp on the glossy sleeve.
        gx, gy = rng.uniform(0.2, 0.8, 2)
        rx, ry = rng.uniform(0.08, 0.2), rng.uniform(0.05, 0.15)
        blob = np.exp(-(((xx - gx) / rx) ** 2 + ((yy - gy) / ry) ** 2))
        glare = (255 * diff.glare_strength * rng.uniform(0.5, 1.0)) * blob
    # Everything below stays 8-bit with saturating cv2 arithmetic: float images of this size
    # made "photographing" the slowest step of a 200-item set.
    light8 = cv2.resize((light * 128).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    img = cv2.multiply(img, cv2.merge([light8, light8, light8]), scale=1 / 128)
    # Sensor noise plus glare, split into the part that brightens and the part that darkens.
    # cv2.randn is ~3x faster than numpy's normal here; seeded from `rng`, so deterministic.
    noise = np.empty((h, w), np.float32)
    cv2.setRNGSeed(int(rng.integers(2**31)))
    cv2.randn(noise, 0.0, diff.noise)
    noise += cv2.resize(glare.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    up = np.clip(noise, 0, 255).astype(np.uint8)
    down = np.clip(-noise, 0, 255).astype(np.uint8)
    img = cv2.add(img, cv2.merge([up, up, up]))
    out = cv2.subtract(img, cv2.merge([down, down, down]))
    # Noise first, then the blur of focus and shake, which also stands in for the phone's
    # own denoising (phone photos are smooth, not grainy; grain would also bloat the files).
    sigma = rng.uniform(*diff.blur)
    if sigma > 0.15:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    return Image.fromarray(out)


def encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    """JPEG or HEIC bytes; fixed encoder options so that a seed gives the same bytes."""
    buf = io.BytesIO()
    if fmt == "heic":
        quality = max(30, quality - 35)  # HEVC at q50 looks like JPEG at q85
        register_heif()
        # x265's default preset takes ~2.5 s per photo; ultrafast ~0.4 s, still deterministic.
        img.save(buf, format="HEIF", quality=quality, enc_params={"preset": "ultrafast"})
    else:
        img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
