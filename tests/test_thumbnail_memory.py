"""Making a thumbnail is bounded in memory whatever the photo's format: measured as the growth
of a fresh process's peak resident size while it makes one thumbnail. (VmHWM, not ru_maxrss:
Linux carries ru_maxrss over from the parent across fork and exec, and pytest's process has
just drawn the 48 MP test photos.)"""

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from scanbatch.testing.imaging import png_header

PROBE = """
import re, sys
from pathlib import Path
from scanbatch.errors import ScanbatchError
from scanbatch.thumbnails import jpeg_thumbnail

def peak_kb():
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", status)[1])

data = Path(sys.argv[1]).read_bytes()
before = peak_kb()
try:
    out = jpeg_thumbnail(data, int(sys.argv[2]))
    answer = "ok"
except ScanbatchError as exc:
    answer = f"{exc.status}"
print(answer, (peak_kb() - before) // 1024)
"""


def peak_growth(path: Path, size: int) -> tuple[str, int]:
    """(outcome, MB the process's peak grew by) for one thumbnail of `path` at `size`."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), str(size)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    return out[0], int(out[1])


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    img = Image.new("RGB", (8000, 6000), "navy")  # 48 MP: a phone's largest photo
    ImageDraw.Draw(img).ellipse((100, 100, 7000, 5000), fill="orange")
    img.save(folder / "big.jpg", quality=90)
    img = Image.new("RGB", (7000, 7000), "navy")  # 49 MP, just under the 50 MP limit
    ImageDraw.Draw(img).ellipse((100, 100, 6000, 6000), fill="orange")
    img.save(folder / "big.png")
    del img
    (folder / "bomb.png").write_bytes(png_header(13000, 13000))  # 169 MP declared, 100 bytes
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size", "outcome", "limit_mb"),
    [
        # Decoded at 1/8 scale (1000x750): a few MB whatever the photo's own size.
        ("big.jpg", 160, "ok", 40),
        # Decoded at 1/2 scale (4000x3000, 48 MB at Pillow's 4 bytes a pixel), then resampled.
        ("big.jpg", 2048, "ok", 128),
        # No reduced-scale decode for PNG: the whole 49 MP (196 MB) once, nothing beside it
        # of the same size (the rotation used to copy the full image: 453 MB).
        ("big.png", 2048, "ok", 320),
        ("big.png", 160, "ok", 260),
        # Over the pixel limit: refused from the header, nothing decoded (it used to allocate
        # the whole canvas, then fail on the truncated data: a 500).
        ("bomb.png", 160, "422", 16),
    ],
)
def test_thumbnail_peak_memory_is_bounded(photos, name, size, outcome, limit_mb):
    got, grew = peak_growth(photos / name, size)
    assert got == outcome
    assert grew < limit_mb, f"{name} at {size}px grew the peak by {grew} MB"
