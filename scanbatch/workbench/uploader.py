"""The browser's half of an upload: an anywidget whose JavaScript (static/uploader.js) keeps the
chosen files in the page, tells the kernel only their metadata, shows the records the kernel
grouped, and posts each job's files straight to the API with the ticket the kernel minted for
it. This module is the transport only; what the messages mean is the upload panel's."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anywidget
import traitlets

STATIC = Path(__file__).parent / "static"
EXIFR = STATIC / "exifr" / "lite.esm.mjs"

# What the browser and the kernel tell each other: JSON objects, each with a "kind".
Message = dict[str, Any]


@dataclass(frozen=True)
class JobPost:
    """What the browser needs to send one job: which files, the manifest, where and with what."""

    job: int  # the job's place in this send, 1-based
    files: Sequence[int]  # indexes into the browser's selection, in manifest order
    manifest: str
    bytes: int  # the photos' bytes together (the ticket is minted for exactly this)
    ticket: str
    url: str
    mode: str = "interactive"  # "backlog": the form field mode=backlog goes with the files

    def message(self) -> Message:
        return {
            "kind": "job",
            "job": self.job,
            "files": list(self.files),
            "manifest": self.manifest,
            "bytes": self.bytes,
            "ticket": self.ticket,
            "url": self.url,
            "mode": self.mode,
        }


class Uploader(anywidget.AnyWidget):
    """The chooser, the records' thumbnails and the sending, all in the browser."""

    _esm = STATIC / "uploader.js"
    _exifr = traitlets.Unicode(EXIFR.read_text()).tag(sync=True)
    accept = traitlets.Unicode("").tag(sync=True)
    head_bytes = traitlets.Int(0).tag(sync=True)
    context_labels = traitlets.Dict().tag(sync=True)
    # The page's own origin (window.location.origin), set by the browser when it shows the
    # widget: the ticket is minted for it, and the API's CORS answers it alone.
    origin = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)

    def __init__(self, on_message: Callable[[Message], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_message = on_message
        self.on_msg(self._received)

    def _received(self, _widget: Any, content: Message, _buffers: Any) -> None:
        self._on_message(content)

    def show_records(self, records: list[Message], photo_types: Sequence[str]) -> None:
        self.send({"kind": "records", "records": records, "photo_types": list(photo_types)})

    def start_sending(self, total_bytes: int, jobs: int) -> None:
        self.send({"kind": "sending", "bytes": total_bytes, "jobs": jobs})

    def post(self, job: JobPost) -> None:
        self.send(job.message())

    def all_sent(self, *, clear: bool) -> None:
        self.send({"kind": "sent-all", "clear": clear})


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, separators=(",", ":"))
