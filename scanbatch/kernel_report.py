"""The HTML pieces of a job's audit trail (the executed processing notebook): tables, each
field with its confidence, an error in words, the matched album's library code, inline
thumbnails of the photos. `BatchJob` (scanbatch.kernel_job) puts them together."""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scanbatch.models import ItemOutcome
from scanbatch.models import library_code as shelf_code
from scanbatch.names import FIELD_LABELS
from scanbatch.thumbnails import inline_img, jpeg_thumbnail

THUMBNAIL_PX = 160


class HtmlReport:
    """HTML that a notebook displays as the cell's result (and nbconvert keeps)."""

    def __init__(self, body: str) -> None:
        self.body = body

    def _repr_html_(self) -> str:
        return self.body

    def __str__(self) -> str:
        return self.body


def esc(value: object) -> str:
    return html.escape(str(value))


def table(header: list[str] | None, rows: list[list[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if header else ""
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{esc(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def fields_html(extraction: dict[str, Any]) -> str:
    rows = []
    for key, label in FIELD_LABELS.items():
        field = extraction.get(key)
        if field is None:
            rows.append([label, "(not read)", ""])
        else:
            rows.append([label, field["value"], f"{field['confidence']:.2f}"])
    return table(["field", "value", "confidence"], rows)


def error_html(outcome: ItemOutcome) -> str:
    message = outcome.error_message or "failed without a message"
    advice = {True: "Trying again may succeed.", False: "Trying again will not help."}
    parts = [f"<p><b>{esc(message)}</b></p>"]
    detail = []
    if outcome.error_code:
        detail.append(f"code <code>{esc(outcome.error_code)}</code>")
    if outcome.retryable is not None:
        detail.append(advice[outcome.retryable])
    if detail:
        parts.append(f"<p>{' '.join(detail)}</p>")
    return "".join(parts)


def library_code(album: Mapping[str, Any]) -> str:
    """The shelf code of a snapshot row (`scanbatch.models.library_code`)."""
    return shelf_code(
        album.get("code_letters"), album.get("code_artist_number"), album.get("code_number")
    )


def album_label(album: Mapping[str, Any] | None) -> str:
    if not album:
        return ""
    code = library_code(album)
    text = f"{album.get('artist_name')} – {album.get('album_title')}"
    return f"{text} [{code}]" if code else text


def field_text(field: Mapping[str, Any] | None) -> str:
    return f"{field['value']} ({field['confidence']:.2f})" if field else ""


def warm_report() -> None:
    """Import what the report's thumbnails use (Pillow's plugins, the HEIF opener: ~30 ms),
    so that a job's first thumbnail does not import them while its photos are being sent."""
    from PIL import Image

    tiny = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiny, "JPEG")
    jpeg_thumbnail(tiny.getvalue(), THUMBNAIL_PX)


def thumbnail_html(path: Path) -> str:
    from PIL import Image

    try:
        jpeg = jpeg_thumbnail(path.read_bytes(), THUMBNAIL_PX, quality=70)
        with Image.open(path) as img:  # the header only (HEIC is registered by now): its size
            size = img.size
    except Exception as exc:  # an unreadable photo is itself worth seeing in the audit trail
        return f"<span>unreadable photo: {esc(exc)}</span>"
    return f"{inline_img(jpeg, path.name)}<br>{size[0]}×{size[1]} px"
