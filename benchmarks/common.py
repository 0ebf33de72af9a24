"""What every benchmark shares: the repository on `sys.path`, the machine's load beside each
figure, one way to print a figure and its ratio to a baseline, percentiles, and photos that
compress like real ones. Benchmarks import this and `scanbatch` (its `scanbatch.testing`
fakes included), never the tests."""

from __future__ import annotations

import io
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024


def load_average() -> str:
    """The machine's load: every figure here is wall time on a machine that may be shared."""
    one, five, _fifteen = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def header(title: str) -> None:
    print(f"\n== {title} == ({load_average()})", flush=True)


def line(label: str, value: str) -> None:
    print(f"  {label:<40} {value}", flush=True)


def ratio(figure: float, baseline: float) -> str:
    return f"{figure / baseline:.2f}x" if baseline > 0 else "n/a"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: with few samples it reports a value that was really seen."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def rss_mib() -> float:
    """Resident memory of this process (Linux), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


def noisy_photo(side: int, fmt: str = "JPEG", seed: int = 1) -> bytes:
    """A photo-like image that does not compress away: smooth gradients plus sensor noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    base = np.stack([(x * 255 // side), (y * 255 // side), ((x + y) * 127 // side)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, "RGB")
    out = io.BytesIO()
    if fmt == "HEIF":
        from scanbatch.images import register_heif

        register_heif()
    img.save(out, fmt, quality=90)
    return out.getvalue()


def photo_of_size(seed: int, target: int = 2_000_000) -> bytes:
    """A JPEG of about `target` bytes (within -5 % to +10 %): noise does not compress, like a
    sharp phone photo."""
    from PIL import Image

    rng = random.Random(seed)
    side = 900
    while True:
        img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=90)
        if target * 0.95 <= out.tell() <= target * 1.1:
            return out.getvalue()
        side = max(16, int(side * (target / out.tell()) ** 0.5) + 1)
