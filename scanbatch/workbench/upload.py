"""Upload: choose photos, see them grouped into records (as thumbnails, fixed by moving a
photo), add optional context per record, and send them as one or more jobs.

The photos never enter the kernel: the browser (`Uploader`, static/uploader.js) tells it each
file's metadata, the kernel groups them and checks every job with the server's own functions,
then mints one upload ticket per job and the browser posts the files straight to the API."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from dataclasses import dataclass, field

import ipywidgets as widgets

from scanbatch.client import Client
from scanbatch.images import MAX_IMAGE_BYTES
from scanbatch.models import JobMode
from scanbatch.validation import MAX_IMAGES, MAX_IMAGES_PER_ITEM, MAX_ITEMS
from scanbatch.workbench import grouping
from scanbatch.workbench.grouping import (
    ACCEPT,
    HEAD_BYTES,
    PHOTO_TYPES,
    Grouped,
    Grouping,
    PhotoInfo,
    SelectionError,
    parse_context,
)
from scanbatch.workbench.modes import ModeChoice
from scanbatch.workbench.ui import explain, guarded, message_box, show
from scanbatch.workbench.uploader import JobPost, Message, Uploader, manifest_text

CONTEXT_LABELS = {"artistName": "Artist", "albumTitle": "Title", "catalogItemId": "Catalog id"}
PARALLEL_POSTS = 2  # two jobs on the way at once keep the line busy without crowding the server
PAUSES = (  # 0: none set, the grouping finds the pause from the photos' own times
    ("found from the photos' times", 0),
    ("10 s", 10),
    ("20 s", 20),
    ("30 s", 30),
    ("1 min", 60),
    ("2 min", 120),
    ("5 min", 300),
)
GROUPINGS = (
    ("By file names", Grouping.NAMES),
    ("N photos a record", Grouping.PATTERN),
    ("By capture time", Grouping.TIME),
)


@dataclass
class JobState:
    """One job of a send, from its plan to the server's answer."""

    number: int
    job: grouping.PlannedJob
    job_id: str | None = None
    error: str | None = None

    @property
    def records(self) -> str:
        """Which records it holds, as the page numbers them."""
        first, last = self.job.records[0].number, self.job.records[-1].number
        return f"record {first}" if first == last else f"records {first}–{last}"


@dataclass
class Sending:
    jobs: list[JobState]
    waiting: list[JobState] = field(default_factory=list)
    on_the_way: int = 0

    @property
    def done(self) -> bool:
        return all(j.job_id or j.error for j in self.jobs)


def megabytes(size: int) -> str:
    """A size as the page writes it (static/uploader.js too): kB under 1 MB."""
    if size < 1e6:
        return f"{size / 1e3:,.0f} kB"
    return f"{size / 1e6:,.1f} MB" if size < 1e7 else f"{size / 1e6:,.0f} MB"


class UploadPanel(widgets.VBox):
    def __init__(self, *, on_submitted: Callable[[str, int], None] | None = None) -> None:
        self._client: Client | None = None
        self.on_submitted = on_submitted
        self.photos: list[PhotoInfo] = []
        self.records: Grouped = Grouped()
        self.submitted: list[str] = []
        self.sending: Sending | None = None
        self._expected = 0
        self.uploader = Uploader(
            self._on_message,
            accept=ACCEPT,
            head_bytes=HEAD_BYTES,
            context_labels=CONTEXT_LABELS,
        )
        self.how = widgets.ToggleButtons(
            options=GROUPINGS,
            value=Grouping.NAMES,
            description="Group",
            style={"button_width": "150px"},
        )
        self.how.add_class("sb-grouping")
        self.per_record = widgets.BoundedIntText(
            value=3,
            min=1,
            max=MAX_IMAGES_PER_ITEM,
            description="Photos a record",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="160px"),
        )
        self.per_record.add_class("sb-per-record")
        self.pattern_types = widgets.HBox(layout=widgets.Layout(align_items="center"))
        self._pattern_label = widgets.HTML("A record's photos, in the order taken:")
        self.gap = widgets.Dropdown(
            options=PAUSES,
            value=0,
            description="New record after a pause of",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="420px"),
        )
        self.gap.add_class("sb-gap")
        self.options = widgets.HBox([self.per_record, self.pattern_types, self.gap])
        self.summary = widgets.HTML()
        self.summary.add_class("sb-summary")
        self.message = message_box().add_class("sb-upload-message")
        self.choice = ModeChoice()
        self._type_boxes: list[widgets.Dropdown] = []
        self._sync_pattern()
        self.how.observe(lambda _c: self._regroup(), "value")
        self.per_record.observe(lambda _c: (self._sync_pattern(), self._regroup()), "value")
        self.gap.observe(lambda _c: self._regroup(), "value")
        help_text = widgets.HTML(
            "<b>1. Choose the photos</b> of one or more records (JPEG, PNG, WebP or HEIC), "
            "as many as you like: they go from this browser straight to the server. "
            "Group them <b>by file names</b> (<code>item03_1_center_label.jpg</code>), "
            "<b>N photos a record</b> in the order chosen (3: front cover, back cover, center "
            "label), or <b>by capture time</b> (a record's photos are seconds apart, the next "
            "record comes after a longer pause). A wrong split is fixed by moving one photo "
            "(◀ + ▶ under it)."
        )
        super().__init__(
            [
                help_text,
                self.how,
                self.options,
                self.summary,
                self.message,
                self.choice,
                self.uploader,
            ]
        )
        self._refresh()

    @property
    def client(self) -> Client | None:
        return self._client

    @client.setter
    def client(self, client: Client | None) -> None:
        self._client = client
        if client is not None:
            self._load_choice(client)

    def _load_choice(self, client: Client) -> None:
        try:
            self.choice.load(client)
        except Exception as exc:  # the choice still works; only its figures are missing
            show(self.choice.note, f"Could not ask the server what reading costs: {explain(exc)}")

    # -- grouping controls ----------------------------------------------------------------

    def _sync_pattern(self) -> None:
        n = self.per_record.value
        while len(self._type_boxes) < n:
            i = len(self._type_boxes)
            box = widgets.Dropdown(
                options=[(t.replace("_", " "), t) for t in PHOTO_TYPES],
                value=PHOTO_TYPES[i % len(PHOTO_TYPES)],  # the order a director shoots in
                layout=widgets.Layout(width="130px"),
            )
            box.add_class(f"sb-pattern-{i}")
            box.observe(lambda _c: self._regroup(), "value")
            self._type_boxes.append(box)
        self.pattern_types.children = [self._pattern_label, *self._type_boxes[:n]]
        self._show_options()

    def _show_options(self) -> None:
        how = self.how.value
        self.per_record.layout.display = "" if how is Grouping.PATTERN else "none"
        self.pattern_types.layout.display = "" if how is not Grouping.NAMES else "none"
        self.gap.layout.display = "" if how is Grouping.TIME else "none"

    def pattern(self) -> list[str]:
        return [b.value for b in self._type_boxes[: self.per_record.value]]

    # -- what the browser says ------------------------------------------------------------

    @guarded("message")
    def _on_message(self, msg: Message) -> None:
        kind = msg.get("kind")
        if kind == "start":
            self.photos = []
            self._expected = int(msg["count"])
            show(self.message, "")
            self.summary.value = f"<i>Reading {self._expected} photo(s) …</i>"
        elif kind == "photos":
            self.photos.extend(
                PhotoInfo.from_browser(int(raw["index"]), raw) for raw in msg["photos"]
            )
            if msg.get("last"):
                self.choose(self.photos)
        elif kind == "move":
            self.move(int(msg["photo"]), str(msg["to"]))
        elif kind == "type":
            self.set_type(int(msg["photo"]), str(msg["type"]))
        elif kind == "context":
            self.set_context(int(msg["record"]), str(msg["key"]), str(msg["value"]))
        elif kind == "clear":
            self.clear()
        elif kind == "send":
            self.send()
        elif kind == "sent":
            self._sent(msg)

    def choose(self, photos: list[PhotoInfo]) -> None:
        """A new selection: grouped the way its names and dates suggest."""
        self.photos = list(photos)
        self.records = Grouped()
        suggested = grouping.suggest(self.photos)
        if suggested is not self.how.value:
            self.how.value = suggested  # regroups
        else:
            self._regroup()

    def _regroup(self) -> None:
        self._show_options()
        if not self.photos:
            self._refresh()
            return
        typed = {r.number: r.context for r in self.records}
        try:
            self.records = grouping.group(
                self.photos, self.how.value, pattern=self.pattern(), gap=self.gap.value or None
            )
        except SelectionError as exc:
            # Say why, and show the photos as one record each meanwhile, not nothing.
            show(self.message, exc.message, "error")
            self.records = grouping.group(self.photos, Grouping.NAMES)
        else:
            show(self.message, "")
        # What was typed for record N stays with record N: regrouping moves photos, not that.
        for record in self.records:
            record.context = dict(typed.get(record.number, {}))
        self._refresh()

    def move(self, photo_index: int, to: str) -> None:
        """`to`: "previous", "next" (the neighbouring records) or "new" (a record of its own,
        after the last)."""
        where = next(r.number for r in self.records if photo_index in indexes(r))
        target = {"previous": where - 1, "next": where + 1, "new": len(self.records) + 1}[to]
        self.records = grouping.move(self.records, photo_index, max(target, 1))
        self._refresh()

    def set_type(self, photo_index: int, photo_type: str) -> None:
        if photo_type not in PHOTO_TYPES:
            raise SelectionError(f"'{photo_type[:30]}' is not a photo type: use one of the list")
        for record in self.records:
            for photo in record.photos:
                if photo.index == photo_index:
                    photo.photo_type = photo_type
        self._refresh()

    def set_context(self, number: int, key: str, value: str) -> None:
        """What the director typed for a record, kept as typed (checked when sending); it
        moves with the record when photos move."""
        if key not in CONTEXT_LABELS:
            raise SelectionError(f"'{key[:30]}' is not something a record can be told")
        for record in self.records:
            if record.number == number:
                record.context[key] = value

    def clear(self) -> None:
        self.photos = []
        self.records = Grouped()
        self._refresh()

    # -- what the page shows --------------------------------------------------------------

    def _refresh(self) -> None:
        self.uploader.show_records(
            [
                {
                    "number": r.number,
                    "photos": [
                        {
                            "index": p.index,
                            "name": p.name,
                            "type": p.photo_type,
                            "taken": (
                                p.info.taken.isoformat(timespec="seconds") if p.info.taken else None
                            ),
                        }
                        for p in r.photos
                    ],
                    "context": r.context,
                }
                for r in self.records
            ],
            PHOTO_TYPES,
        )
        self._summarise()

    def _summarise(self) -> None:
        limits = (
            f"The server takes photos of at most {MAX_IMAGE_BYTES // 2**20} MiB each, "
            f"{MAX_IMAGES_PER_ITEM} a record, and jobs of at most {MAX_ITEMS} records and "
            f"{MAX_IMAGES} photos: a bigger crate is sent as several jobs."
        )
        if not self.records:
            self.summary.value = f"<i>No photos chosen yet.</i> {limits}"
            return
        size = sum(p.size for p in self.photos)
        try:
            jobs = len(grouping.split_jobs(self.records))
        except SelectionError:
            jobs = 0
        notes = "".join(f"<br>{html.escape(n)}" for n in self.records.notes)
        self.summary.value = (
            f"<b>{len(self.photos)} photo(s) in {len(self.records)} record(s)</b>, "
            f"{megabytes(size)}"
            + (f", sent as {jobs} jobs" if jobs > 1 else "")
            + f". {limits}{notes}"
        )

    # -- sending --------------------------------------------------------------------------

    @guarded("message")
    def plan(self) -> list[grouping.PlannedJob]:
        return grouping.plan_jobs(
            [
                dataclasses.replace(r, context=parse_context(r.number, r.context))
                for r in self.records
            ]
        )

    def send(self) -> None:
        if self.client is None:
            show(self.message, "Sign in first (at the top of the page).", "error")
            return
        if self.sending is not None and not self.sending.done:
            return
        jobs = self.plan()
        if not jobs:
            return  # the message says why
        states = [JobState(n, job) for n, job in enumerate(jobs, 1)]
        self.sending = Sending(states, waiting=list(states))
        self.uploader.busy = True
        total = sum(j.total_bytes for j in jobs)
        show(
            self.message,
            f"Sending {sum(len(j.photos) for j in jobs)} photo(s) ({megabytes(total)}) as "
            f"{len(jobs)} job(s) …",
            "info",
        )
        self.uploader.start_sending(total, len(jobs))
        self._dispatch()

    def _dispatch(self) -> None:
        """Start jobs until PARALLEL_POSTS are on the way. A ticket is minted just before its
        job leaves, so none expires waiting behind the others of a big crate."""
        sending = self.sending
        assert sending is not None and self.client is not None
        while sending.waiting and sending.on_the_way < PARALLEL_POSTS:
            state = sending.waiting.pop(0)
            photos, size = state.job.photos, state.job.total_bytes
            try:
                ticket = self.client.upload_ticket(
                    photos=len(photos), bytes=size, origin=self.uploader.origin
                )
            except Exception as exc:
                state.error = explain(exc)
                continue
            sending.on_the_way += 1
            self.uploader.post(
                JobPost(
                    job=state.number,
                    files=state.job.files(),
                    manifest=manifest_text(state.job.manifest()),
                    bytes=size,
                    ticket=ticket.ticket,
                    url=ticket.url,
                    mode=self.choice.mode,
                )
            )
        if sending.done:
            self._finished()

    def _sent(self, msg: Message) -> None:
        sending = self.sending
        if sending is None:
            return
        state = sending.jobs[int(msg["job"]) - 1]
        sending.on_the_way -= 1
        if msg.get("jobId"):
            state.job_id = str(msg["jobId"])
            self.submitted.append(state.job_id)
            if self.on_submitted is not None:
                self.on_submitted(state.job_id, len(state.job.records))
        else:
            state.error = str(msg.get("error") or "the server gave no reason")
        self._report()
        self._dispatch()

    def _report(self) -> None:
        sending = self.sending
        assert sending is not None
        sent = [j for j in sending.jobs if j.job_id]
        failed = [j for j in sending.jobs if j.error]
        lines = [f"Sent {len(sent)} of {len(sending.jobs)} job(s)."]
        lines += [f"Job {j.number} ({j.records}): {j.error}" for j in failed]
        kind = "error" if failed else ("ok" if sending.done else "info")
        show(self.message, "\n".join(lines), kind)

    def _finished(self) -> None:
        sending = self.sending
        assert sending is not None
        self._report()
        failed = [j for j in sending.jobs if j.error]
        self.uploader.busy = False
        if not failed:
            self.clear()
            backlog = " to the backlog" if self.choice.mode == JobMode.BACKLOG else ""
            show(
                self.message,
                f"Sent {len(sending.jobs)} job(s){backlog}. Their progress is shown below; the "
                "records appear under Review when read.",
                "ok",
            )
        else:
            # What was not sent stays chosen, so Send tries those records again.
            left = [r for j in failed for r in j.job.records]
            self.photos = [p.info for r in left for p in r.photos]
            kept = Grouped(how=self.records.how, pattern=self.records.pattern)
            for number, record in enumerate(left, 1):
                typed = {k: str(v) for k, v in record.context.items()}
                kept.append(dataclasses.replace(record, number=number, context=typed))
            self.records = kept
            self._refresh()
        self.uploader.all_sent(clear=not failed)


def indexes(record: grouping.Record) -> set[int]:
    return {p.index for p in record.photos}
