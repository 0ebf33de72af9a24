"""Wall time of a 10-item batch through the real pipeline and the real google-genai SDK,
against the fake Gemini server answering each call after 1 s.

    .venv/bin/python benchmarks/bench_gemini.py [--items 10] [--latency 1.0] [--concurrency N]

Runs the batch sequentially (concurrency 1), at settings.item_concurrency, and at any extra
concurrency given, and prints each wall time and its speed-up over sequential."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)

from scanbatch.extractors import create_extractor
from scanbatch.extractors.gemini import GeminiExtractor
from scanbatch.jobfolder import JobFolder
from scanbatch.models import Manifest, Status
from scanbatch.pipeline import process_folder
from scanbatch.settings import load_settings
from scanbatch.testing.fake_gemini import FakeGemini
from scanbatch.testing.imaging import image_bytes


def make_job(jobs_dir: Path, name: str, items: int) -> JobFolder:
    manifest = Manifest.model_validate(
        {
            "items": [
                {
                    "imageCount": 2,
                    "photoTypes": ["front", "back"],
                    "context": {"stickerText": f"item {i}"},
                }
                for i in range(items)
            ]
        }
    )
    folder = JobFolder.for_job(jobs_dir, name)
    folder.create(manifest)
    for i in range(items):
        folder.write_image(i, 0, image_bytes("JPEG", size=(640, 640)))
        folder.write_image(i, 1, image_bytes("HEIF", size=(640, 640), color="blue"))
    return folder


def run(extractor: GeminiExtractor, jobs_dir: Path, items: int, concurrency: int) -> float:
    folder = make_job(jobs_dir, f"job-c{concurrency}", items)
    started = time.perf_counter()
    outcomes = process_folder(folder, extractor, concurrency=concurrency)
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if o.status != Status.COMPLETED]
    if len(outcomes) != items or failed:
        raise SystemExit(f"benchmark run failed: {failed[:1]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, action="append", default=[])
    args = parser.parse_args()

    # Never a real key: every request goes to the fake server on loopback.
    os.environ["GEMINI_API_KEY"] = "bench-key"
    with FakeGemini(latency=args.latency) as fake, tempfile.TemporaryDirectory() as tmp:
        # A fresh data folder: the rate limit's window file lives there.
        settings = load_settings(extractor="gemini", data_dir=Path(tmp))
        extractor = create_extractor("gemini", settings, base_url=fake.base_url)
        assert isinstance(extractor, GeminiExtractor)
        levels = [1, settings.item_concurrency, *args.concurrency]
        levels = list(dict.fromkeys(levels))  # keep order, drop repeats
        print(
            f"{args.items} items x 2 photos, fake Gemini latency {args.latency:g} s, "
            f"rpm limit {extractor.options.rpm}, model {extractor.options.model}"
        )
        times = {c: run(extractor, Path(tmp), args.items, c) for c in levels}
        base = times[1]
        for concurrency, elapsed in times.items():
            note = (
                " (settings.item_concurrency)" if concurrency == settings.item_concurrency else ""
            )
            print(
                f"concurrency {concurrency:>2}{note}: {elapsed:6.2f} s  "
                f"speed-up {base / elapsed:4.1f}x"
            )
        print(f"requests received by the fake: {fake.request_count}")
        extractor.close()


if __name__ == "__main__":
    main()
