"""The dataset format, as written by the review export (a golden set): a folder (or zip) of the
photos, `manifest.json` (the batch manifest, object form), `truth.json` (per item: the six
fields, `albumId`, `photos`, `photoTypes`) and `results.jsonl` (what was read, one line per item:
the lines the processing kernel writes, `ItemOutcome`, with only the fields the evaluation
reads, `itemIndex`, `status`, `extraction`, `matchedAlbumId` and `finishedAt`; the one reader,
`jobfolder.read_results`, parses both) so that `scanbatch eval truth.json results.jsonl` scores
the export exactly as the metrics route scored the same reviews.

Items are numbered 0..n-1 in the order given; `source` in each truth item names the job and item
it came from."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanbatch.jobfolder import RESULTS
from scanbatch.store.reviews import ReviewedItem

CHUNK = 1024 * 1024


def eval_inputs(
    items: Sequence[ReviewedItem],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(truth items, outcomes) numbered 0..n-1: what `evaluate` takes, for the metrics route
    and, written to files, for `scanbatch eval` on an export."""
    truth, outcomes = [], []
    for n, item in enumerate(items):
        truth.append({"itemIndex": n, **item.truth})
        outcomes.append({**item.outcome, "itemIndex": n})
    return truth, outcomes


def photo_name(index: int, position: int, photo_type: str, suffix: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in photo_type)[:40] or "photo"
    return f"item{index:02d}_{position}_{safe}{suffix}"


def dataset_entries(
    items: Sequence[ReviewedItem], photo_paths: Iterable[list[Path]]
) -> Iterator[tuple[str, bytes | Path]]:
    """Every file of the dataset as (name, bytes or a path to copy), photos first.
    `photo_paths` gives each item's photo files, in the same order as `items`."""
    truth, outcomes = eval_inputs(items)
    manifest_items = []
    for n, (item, paths) in enumerate(zip(items, photo_paths, strict=True)):
        names = [
            photo_name(n, pos, ptype, path.suffix)
            for pos, (ptype, path) in enumerate(zip(item.photo_types, paths, strict=True))
        ]
        yield from zip(names, paths, strict=True)
        truth[n].update(
            photos=names,
            photoTypes=item.photo_types,
            source={"jobId": item.job_id, "itemIndex": item.item_index},
            reviewer=item.review.reviewer,
            reviewedAt=item.review.reviewed_at.isoformat(),
            note=item.review.note,
        )
        entry: dict[str, Any] = {"imageCount": len(names), "photoTypes": item.photo_types}
        if item.context:
            entry["context"] = item.context
        manifest_items.append(entry)
    yield "manifest.json", _json({"items": manifest_items})
    yield (
        "truth.json",
        _json(
            {
                "source": "review export",
                "exportedAt": datetime.now(UTC).isoformat(),
                "items": truth,
            }
        ),
    )
    yield RESULTS, "".join(json.dumps(o) + "\n" for o in outcomes).encode()


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


class _Sink(io.RawIOBase):
    """A write-only, non-seekable stream that hands its bytes out as they come: zipfile then
    writes data descriptors instead of seeking back, and nothing is held longer than a chunk."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._chunks.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def zip_stream(entries: Iterable[tuple[str, bytes | Path]]) -> Iterator[bytes]:
    """The zip of `entries`, produced chunk by chunk; photos are stored (already compressed),
    the JSON files deflated."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w") as zf:
        for name, source in entries:
            if isinstance(source, bytes):
                zf.writestr(name, source, compress_type=zipfile.ZIP_DEFLATED)
            else:
                info = zipfile.ZipInfo.from_file(source, name)
                info.compress_type = zipfile.ZIP_STORED
                with source.open("rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                    while chunk := src.read(CHUNK):
                        dst.write(chunk)
                        yield sink.drain()
            yield sink.drain()
    yield sink.drain()
