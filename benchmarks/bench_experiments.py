"""An experiment of 50 records x 3 Gemini variants (prompts v1 and v2, and v1 at another
temperature) through the real google-genai SDK against the fake Gemini answering each call
after 1 s; then the same experiment again, answered from the disk cache.

    .venv/bin/python benchmarks/bench_experiments.py [--items 50] [--latency 1.0]

Goals: the first run <= 20 s, the re-run <= 2 s. The baseline is the same requests one after
another (requests x measured latency of one call), printed with the ratio. The fake has no
quota, so the rate limit is raised (SCANBATCH_GEMINI_RPM); at Google's default 60 requests per
minute, 150 requests take at least 2.5 minutes whatever the concurrency."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)

from scanbatch.experiments import compare, load_dataset, run_experiment
from scanbatch.extractors import check_extractor
from scanbatch.names import FIELDS
from scanbatch.settings import load_settings
from scanbatch.testing.fake_gemini import (
    FakeGemini,
    extraction_reply,
    image_digests,
    system_instruction_text,
)
from scanbatch.testing.imaging import image_bytes

VARIANTS = [
    {"extractor": "gemini", "prompt_version": "v1"},
    {"extractor": "gemini", "prompt_version": "v2"},
    {"extractor": "gemini", "prompt_version": "v1", "temperature": 0.7},
]


def make_dataset(folder: Path, items: int) -> Path:
    folder.mkdir(parents=True)
    manifest, truth = [], []
    for i in range(items):
        names = [f"item{i:02d}_0_front_cover.jpg", f"item{i:02d}_1_center_label.jpg"]
        # A colour per record: distinct bytes, so every record is its own request.
        (folder / names[0]).write_bytes(image_bytes("JPEG", (640, 640), f"#{i * 5:02x}4080"))
        (folder / names[1]).write_bytes(image_bytes("JPEG", (640, 640), f"#80{i * 5:02x}40"))
        manifest.append({"imageCount": 2, "photoTypes": ["front_cover", "center_label"]})
        truth.append(
            {
                "itemIndex": i,
                "artistName": f"Artist {i}",
                "albumTitle": f"Title {i}",
                "labelName": "Label",
                "catalogNumber": f"LB-{i:03d}",
                "reviewText": None,
                "upc": None,
                "albumId": None,
                "photos": names,
                "photoTypes": ["front_cover", "center_label"],
            }
        )
    (folder / "manifest.json").write_text(json.dumps({"items": manifest}))
    (folder / "truth.json").write_text(json.dumps({"items": truth}))
    return folder


def responder(dataset: Path):
    ds = load_dataset(dataset)
    by_photo = {item.photos[0].sha256: item for item in ds.items}

    def respond(request):
        item = by_photo[image_digests(request.body)[0]]
        fields = {n: {"value": item.value(n), "confidence": 0.9} for n in FIELDS if item.value(n)}
        if "Work in two passes" in system_instruction_text(request.body) and item.index % 7 == 0:
            fields["artistName"] = {"value": "Someone Else", "confidence": 0.6}
        return extraction_reply(fields)

    return respond


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(Path(tmp) / "set", args.items)
        with FakeGemini(latency=args.latency, responder=responder(dataset)) as fake:
            # Never a real key: every request goes to the fake server on loopback.
            os.environ["GEMINI_API_KEY"] = "bench-key"
            os.environ.pop("GOOGLE_GEMINI_BASE_URL", None)
            os.environ["SCANBATCH_GEMINI_BASE_URL"] = fake.base_url
            os.environ["SCANBATCH_GEMINI_RPM"] = "10000"
            settings = load_settings(data_dir=Path(tmp) / "data")
            rpm = check_extractor("gemini", settings).rpm
            requests = args.items * len(VARIANTS)
            print(
                f"{args.items} records x 2 photos x {len(VARIANTS)} variants = {requests} "
                f"requests; fake Gemini latency {args.latency:g} s; concurrency "
                f"{settings.item_concurrency} per variant; rpm limit {rpm}"
            )
            started = time.perf_counter()
            first = run_experiment(dataset, VARIANTS, settings=settings, progress=False)
            cold = time.perf_counter() - started
            sent = fake.request_count
            started = time.perf_counter()
            again = run_experiment(dataset, VARIANTS, settings=settings, progress=False)
            warm = time.perf_counter() - started
            new = fake.request_count - sent
            started = time.perf_counter()
            text = compare(again).format_text()
            compare_s = time.perf_counter() - started
    failed = sum(r["status"] == "failed" for r in first.records)
    sequential = requests * args.latency
    print(f"first run:      {cold:6.2f} s  ({sent} requests, {failed} failed)   goal <= 20 s")
    print(
        f"from the cache: {warm:6.2f} s  ({new} new requests, "
        f"{sum(r['cached'] for r in again.records)} cached)   goal <= 2 s"
    )
    print(f"comparison (matrix, pairs, bootstrap): {compare_s:.2f} s")
    print(
        f"baseline, the same requests one after another: {sequential:.0f} s; "
        f"first run {sequential / cold:.1f}x faster, cached re-run {sequential / warm:.0f}x"
    )
    print(f"first run / cached re-run: {cold / warm:.1f}x")
    print()
    print("\n".join(text.splitlines()[:12]))


if __name__ == "__main__":
    main()
