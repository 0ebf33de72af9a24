"""What the upload hardening costs per request: prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_upload_checks.py [--repeat 200]

- the pixel check (`check_pixels`: Pillow reads the header, decodes nothing) per photo, against
  the type sniff it follows (`sniff_mime`, 32 bytes) and against a full decode (what a bomb
  would have cost), for a 2048 px JPEG and HEIC (what the app sends) and a 13000² PNG bomb;
- the manifest nesting guard (`_depth_over`, on the parsed value) against `json.loads` of the
  same 10-item manifest, and on as many containers as the 256 KiB form-field limit allows."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
from PIL import Image

from scanbatch.images import check_pixels, sniff_mime
from scanbatch.testing.imaging import png_header
from scanbatch.validation import _depth_over


def per_call(fn, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat * 1000


def photo(fmt: str) -> bytes:
    from scanbatch.images import register_heif

    register_heif()
    img = Image.effect_noise((2048, 1536), 64).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=85)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print("timings are wall clock on a shared machine (under load): compare ratios")
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "jpeg 2048x1536": (photo("JPEG"), "image/jpeg"),
            "heic 2048x1536": (photo("HEIF"), "image/heic"),
            "png bomb 13000²": (png_header(13000, 13000), "image/png"),
        }
        for name, (data, mime) in cases.items():
            path = Path(tmp) / name.replace(" ", "_")
            path.write_bytes(data)
            sniff = per_call(lambda d=data: sniff_mime(d[:32], index=0), args.repeat)

            def header(p=path, m=mime):
                with contextlib.suppress(Exception):
                    check_pixels(p, m, index=0)

            pixels = per_call(header, args.repeat)
            line = f"{name:<18} sniff {sniff:8.4f} ms  pixel check {pixels:7.3f} ms"
            if "bomb" not in name:
                decode = per_call(lambda p=path: Image.open(p).load(), max(5, args.repeat // 20))
                line += f"  full decode {decode:7.1f} ms  (check/decode {pixels / decode:.3f})"
            print(line)
    item = {
        "imageCount": 3,
        "photoTypes": ["front", "back", "center_label"],
        "context": {"artistName": "A", "albumTitle": "T", "stickerText": "RO [5/3] {great}"},
    }
    manifest = json.dumps({"items": [item] * 10})
    parsed = json.loads(manifest)
    guard = per_call(lambda: _depth_over(parsed, 8), args.repeat * 10)
    parse = per_call(lambda: json.loads(manifest), args.repeat * 10)
    print(
        f"10-item manifest ({len(manifest)} B): depth guard {guard * 1000:.1f} µs, "
        f"json.loads {parse * 1000:.1f} µs (guard/parse {guard / parse:.2f})"
    )
    wide = json.loads(json.dumps([[1] * 8] * 8000))  # as many containers as 256 KiB holds
    wide_ms = per_call(lambda: _depth_over(wide, 8), 20)
    print(f"8,000 containers (a 256 KiB form field): depth guard {wide_ms:.2f} ms")


if __name__ == "__main__":
    main()
