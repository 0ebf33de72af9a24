"""Upload: choose photos, see them grouped into records (editable), add optional context per
record, and send them as one or more jobs."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from ipywidgets.widgets.widget_description import DescriptionStyle

from scanbatch.client import Client
from scanbatch.thumbnails import jpeg_thumbnail
from scanbatch.validation import MAX_IMAGES, MAX_ITEMS
from scanbatch.workbench.grouping import (
    ACCEPT,
    CONTEXT_KEYS,
    PHOTO_TYPES,
    PhotoInfo,
    PlannedJob,
    SelectedPhoto,
    group_photos,
    parse_context,
    plan_jobs,
    records_of,
    split_jobs,
)
from scanbatch.workbench.ui import Background, explain, guarded, message_box, show

THUMB_PX = 72
CONTEXT_LABELS = {"artistName": "Artist", "albumTitle": "Title", "catalogItemId": "Catalog id"}


class _Shared:
    """Layouts and styles are widgets too: one set for every row instead of one per row keeps
    a selection of 50 photos from costing hundreds of extra widget messages."""

    def __init__(self) -> None:
        self.name = widgets.Layout(width="260px")
        self.record = widgets.Layout(width="150px")
        self.photo_type = widgets.Layout(width="230px")
        self.row = widgets.Layout(align_items="center")
        self.style = DescriptionStyle(description_width="initial")


class PhotoRow(widgets.HBox):
    """One selected photo: its thumbnail, name, record number and photo type (both editable)."""

    def __init__(
        self, photo: SelectedPhoto, on_change: Callable[[], None], shared: _Shared
    ) -> None:
        self.photo = photo
        # Hidden until the thumbnail exists: an empty Image shows a broken-image icon.
        self.thumb = widgets.Image(
            format="jpeg", layout=widgets.Layout(width=f"{THUMB_PX}px", display="none")
        )
        self.record = widgets.BoundedIntText(
            value=photo.record,
            min=1,
            max=999,
            description="Record",
            layout=shared.record,
            style=shared.style,
        )
        options = list(dict.fromkeys([photo.photo_type, *PHOTO_TYPES]))
        self.photo_type = widgets.Dropdown(
            options=options,
            value=photo.photo_type,
            description="Photo",
            layout=shared.photo_type,
            style=shared.style,
        )
        name = widgets.HTML(f"<code>{html.escape(photo.name)}</code>", layout=shared.name)
        self.record.observe(lambda _c: on_change(), "value")
        self.photo_type.observe(lambda _c: on_change(), "value")
        super().__init__([self.thumb, name, self.record, self.photo_type], layout=shared.row)
        self.add_class("sb-photo-row")

    def read_back(self) -> SelectedPhoto:
        self.photo.record = self.record.value
        self.photo.photo_type = self.photo_type.value
        return self.photo


class UploadPanel(widgets.VBox):
    def __init__(self, *, on_submitted: Callable[[str, int], None] | None = None) -> None:
        self.client: Client | None = None
        self.on_submitted = on_submitted
        self.background = Background()
        self.upload = widgets.FileUpload(
            accept=ACCEPT, multiple=True, description="Choose photos", icon="upload"
        )
        self.upload.add_class("sb-upload")
        self.clear_button = widgets.Button(description="Clear", icon="times")
        self.send_button = widgets.Button(
            description="Send for reading", button_style="primary", icon="paper-plane"
        )
        self.send_button.add_class("sb-send")
        self.summary = widgets.HTML()
        self.message = message_box()
        self.rows_box = widgets.VBox()
        self.context_box = widgets.VBox()
        self.rows: list[PhotoRow] = []
        self.files: list[tuple[str, bytes]] = []  # the selection, by PhotoInfo.index
        self.context_inputs: dict[int, dict[str, widgets.Text]] = {}
        self.submitted: list[str] = []
        self.upload.observe(self._on_files, "value")
        self.clear_button.on_click(lambda _b: self.clear())
        self.send_button.on_click(lambda _b: self.send())
        help_text = widgets.HTML(
            "<b>1. Choose the photos</b> of one or more records (JPEG, PNG, WebP or HEIC). "
            "Files named like <code>item03_1_center_label.jpg</code> are grouped by their "
            "name; other photos each start a new record: set the record number to put "
            "several photos of one record together. "
            f"A job holds at most {MAX_ITEMS} records and {MAX_IMAGES} photos; a bigger "
            "crate is sent as several jobs."
        )
        super().__init__(
            [
                help_text,
                # Send sits beside the chooser: with 50 photos listed, the end of the list is
                # a long scroll away.
                widgets.HBox([self.upload, self.clear_button, self.send_button]),
                self.summary,
                self.message,
                self.rows_box,
                self.context_box,
            ]
        )
        self._refresh_summary()

    # -- selection ------------------------------------------------------------------------

    @guarded("message")
    def _on_files(self, change: dict[str, Any]) -> None:
        entries = change["new"]
        if not entries:
            return
        files = [(e["name"], bytes(e["content"])) for e in entries]
        show(self.message, "")
        self.set_files(files)

    def set_files(self, files: list[tuple[str, bytes]]) -> None:
        self.files = files
        photos = group_photos(PhotoInfo.of_bytes(i, n, d) for i, (n, d) in enumerate(files))
        self.context_inputs = {}
        # The figure first: it is what the person waits for; the rows follow.
        self._summarise(photos)
        shared = _Shared()
        self.rows = [PhotoRow(p, self._refresh_summary, shared) for p in photos]
        self.rows_box.children = self.rows
        self._refresh_summary()
        rows = list(self.rows)
        self.background.run(self._make_thumbnails, rows, files)

    def _make_thumbnails(self, rows: list[PhotoRow], files: list[tuple[str, bytes]]) -> None:
        for row in rows:
            try:
                row.thumb.value = jpeg_thumbnail(files[row.photo.index][1], THUMB_PX * 2)
                row.thumb.layout.display = ""
            except Exception:
                # Not an image we can read: the send checks name the file with the server's words.
                continue

    def clear(self) -> None:
        self.upload.value = ()
        self.rows = []
        self.files = []
        self.rows_box.children = ()
        self.context_inputs = {}
        self._refresh_summary()

    def photos(self) -> list[SelectedPhoto]:
        return [row.read_back() for row in self.rows]

    def _refresh_summary(self) -> None:
        photos = self.photos()
        self._sync_context_rows(sorted({p.record for p in photos}))
        self._summarise(photos)

    def _summarise(self, photos: list[SelectedPhoto]) -> None:
        numbers = {p.record for p in photos}
        if not photos:
            self.summary.value = "<i>No photos chosen yet.</i>"
            self.send_button.disabled = True
            return
        jobs = len(split_jobs(records_of(photos)))
        self.summary.value = (
            f"<b>{len(photos)} photo(s) in {len(numbers)} record(s)</b>"
            + (f", sent as {jobs} jobs" if jobs > 1 else "")
            + "."
        )
        self.send_button.disabled = False

    def _sync_context_rows(self, numbers: list[int]) -> None:
        boxes = []
        for n in numbers:
            inputs = self.context_inputs.get(n)
            if inputs is None:
                inputs = {
                    key: widgets.Text(
                        placeholder=CONTEXT_LABELS[key] + " (optional)",
                        layout=widgets.Layout(width="200px" if key != "catalogItemId" else "140px"),
                    ).add_class(f"sb-context-{n}-{key}")
                    for key in CONTEXT_KEYS
                }
                self.context_inputs[n] = inputs
            boxes.append(
                widgets.HBox(
                    [
                        widgets.HTML(f"Record {n}:", layout=widgets.Layout(width="80px")),
                        *list(inputs.values()),
                    ]
                )
            )
        header = (
            [widgets.HTML("<b>2. What you already know</b> about each record (optional):")]
            if numbers
            else []
        )
        self.context_box.children = header + boxes

    # -- sending --------------------------------------------------------------------------

    @guarded("message")
    def plan(self) -> list[PlannedJob]:
        photos = self.photos()
        present = {p.record for p in photos}
        contexts = {
            n: parse_context(n, {k: w.value for k, w in inputs.items()})
            for n, inputs in self.context_inputs.items()
            if n in present
        }
        return plan_jobs(records_of(photos, contexts))

    def send(self) -> None:
        if self.client is None:
            show(self.message, "Sign in first (at the top of the page).", "error")
            return
        jobs = self.plan()
        if not jobs:
            return  # the message says why
        self.send_button.disabled = True
        total = sum(len(j.photos) for j in jobs)
        show(self.message, f"Sending {total} photo(s) as {len(jobs)} job(s) …", "info")
        self.background.run(self._send_jobs, jobs, self.files, on_error=self._send_failed)

    def _send_jobs(self, jobs: list[PlannedJob], files: list[tuple[str, bytes]]) -> None:
        assert self.client is not None
        sent = []
        for n, job in enumerate(jobs, 1):
            try:
                job_id = self.client.submit([files[i] for i in job.files()], job.manifest())
            except Exception as exc:
                done = f" ({len(sent)} of {len(jobs)} jobs were sent)" if sent else ""
                show(self.message, f"Job {n} of {len(jobs)}: {explain(exc)}{done}", "error")
                self.send_button.disabled = False
                return
            sent.append(job_id)
            self.submitted.append(job_id)
            if self.on_submitted is not None:
                self.on_submitted(job_id, len(job.records))
        self.clear()
        show(
            self.message,
            f"Sent {len(sent)} job(s). Their progress is shown below; the records appear "
            "under Review when read.",
            "ok",
        )

    def _send_failed(self, exc: BaseException) -> None:
        show(self.message, explain(exc), "error")
        self.send_button.disabled = False
