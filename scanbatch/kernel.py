"""What `notebooks/process_batch.ipynb` runs inside its kernel. It never opens the job store:
it reads the job folder and the catalog snapshot and appends to `results.jsonl`; the server
ingests the lines. What each item sent and got back is displayed, so the executed notebook is
the job's audit trail."""

from __future__ import annotations

import base64
import html
import importlib
import io
import json
from pathlib import Path

from scanbatch.extractors import create_extractor
from scanbatch.jobfolder import JobFolder
from scanbatch.models import ItemOutcome
from scanbatch.pipeline import pending_items, process_folder
from scanbatch.settings import load_settings

THUMBNAIL_PX = 160


def import_plugins(modules: list[str]) -> None:
    """Import modules that register extra extractors (e.g. a test's fake backend)."""
    for name in modules:
        importlib.import_module(name)


def process_job(
    job_dir: str,
    extractor: str,
    item_concurrency: int,
    catalog_snapshot: str = "",
    plugins: list[str] | None = None,
) -> list[ItemOutcome]:
    from IPython.display import HTML, display

    from scanbatch.catalog import load_matcher

    import_plugins(plugins or [])
    folder = JobFolder(Path(job_dir))
    settings = load_settings(extractor=extractor, item_concurrency=item_concurrency)
    backend = create_extractor(extractor, settings)
    snapshot = Path(catalog_snapshot) if catalog_snapshot else None
    matcher = (
        load_matcher(snapshot, settings.match_min_score) if snapshot and snapshot.exists() else None
    )
    manifest = folder.read_manifest()
    todo = pending_items(folder)
    print(
        f"job {folder.job_id}: {len(manifest.items)} items, {len(todo)} to process "
        f"with '{extractor}' (concurrency {item_concurrency}); "
        f"catalog: {'snapshot ' + str(snapshot) if matcher else 'none'}"
    )

    def show(outcome: ItemOutcome) -> None:
        item = manifest.items[outcome.item_index]
        display(
            HTML(item_html(folder, outcome.item_index, item.photo_types, item.context, outcome))
        )

    outcomes = process_folder(
        folder, backend, matcher=matcher, concurrency=item_concurrency, on_item=show
    )
    failed = sum(1 for o in outcomes if o.status == "failed")
    print(f"done: {len(outcomes) - failed} completed, {failed} failed")
    return outcomes


def _thumbnail(data: bytes) -> str:
    try:
        import pillow_heif
        from PIL import Image

        pillow_heif.register_heif_opener()
        img = Image.open(io.BytesIO(data))
        img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=70)
    except Exception as exc:  # an unreadable photo is itself worth seeing in the audit trail
        return f"<span>unreadable photo: {html.escape(str(exc))}</span>"
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def item_html(folder: JobFolder, index: int, photo_types: list[str], context, outcome) -> str:
    """One item as HTML: the photos sent (thumbnails, type, MIME, size), the context, and what
    came back (fields, match, error, usage)."""
    cells = []
    for path, photo_type in zip(folder.image_paths(index), photo_types, strict=False):
        data = path.read_bytes()
        cells.append(
            f"<td>{_thumbnail(data)}<br>{html.escape(photo_type)} · {path.suffix[1:]} · "
            f"{len(data) // 1024} KiB</td>"
        )
    sent_context = context.model_dump(by_alias=True, exclude_none=True) if context else {}
    usage = (
        outcome.usage.model_dump(exclude={"raw_response"}, exclude_none=True)
        if outcome.usage
        else {}
    )
    back = {
        "status": outcome.status.value,
        "extraction": outcome.extraction,
        "matchedAlbumId": outcome.matched_album_id,
        "matchScore": outcome.match_score,
        "errorMessage": outcome.error_message,
        "usage": usage,
    }
    raw = (outcome.usage.raw_response or "")[:20000] if outcome.usage else ""
    return (
        f"<h4>Item {index}: {outcome.status.value}</h4><table><tr>{''.join(cells)}</tr></table>"
        f"<p><b>context sent</b>: <code>{html.escape(json.dumps(sent_context))}</code></p>"
        f"<pre>{html.escape(json.dumps(back, indent=2, ensure_ascii=False))}</pre>"
        + (
            f"<details><summary>raw response</summary><pre>{html.escape(raw)}</pre></details>"
            if raw
            else ""
        )
    )
