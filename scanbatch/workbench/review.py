"""Review: the queue (least confident first, newest first, or the audit sample; all, or only
those that need review), one record at a time: its photos, the six fields pre-filled with what
was read and how sure the reader was, the matched catalog album with a catalog search to
change it, a note, and Save & next. Reviewed records can be reopened."""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as widgets

from scanbatch.audit import ReviewItem
from scanbatch.client import Client
from scanbatch.models import MatchedAlbum
from scanbatch.names import FIELD_LABELS
from scanbatch.workbench.ui import Background, guarded, message_box, show

THUMB_PX = 160
LARGE_PX = 1200
PAGE = 100  # the review route's largest page
STATES = (
    ("To review", "unreviewed"),
    ("Needs review", "needsReview"),
    ("Reviewed", "reviewed"),
    ("All", "all"),
)
ORDERS = (
    ("Least confident first", "confidence"),
    ("Newest first", "newest"),
    ("Audit sample", "audit"),
)
# What the count line says about the order, after "— to review, ".
_ORDER_WORDS = {
    "confidence": "least confident first (the number is the reader's lowest confidence among "
    "the record's fields)",
    "newest": "newest first",
    "audit": "in the audit sample's order",
}
# Why a choice exists, in the director's words: shown under the filters when it is picked.
_WHY = {
    "audit": "Audit sample: records in a random order, the same for everyone. The records you "
    "review from it are a fair sample, so the Dashboard can say how good the reader is on all "
    "your scans, not only on the hard ones.",
    "needsReview": "Needs review: records not reviewed yet where the reader is unsure of at "
    "least one field, that is below the confidence at which it has been right 99% of the "
    "time (the Dashboard lists these levels per field). The other records can be left as read.",
}
WHO = (("Everyone's", "all"), ("Mine", "mine"))


def confidence_badge(confidence: float | None, read: bool = True) -> str:
    """The reader's confidence as a coloured number: green sure, amber unsure, red doubtful."""
    if not read or confidence is None:
        return (
            '<span class="sb-conf" style="color:#666;background:#eee;padding:2px 6px;'
            'border-radius:3px">not read</span>'
        )
    colour = "#1b5e20" if confidence >= 0.85 else "#8a5a00" if confidence >= 0.6 else "#b71c1c"
    back = "#e8f5e9" if confidence >= 0.85 else "#fff4e0" if confidence >= 0.6 else "#fdecea"
    return (
        f'<span class="sb-conf" style="color:{colour};background:{back};padding:2px 6px;'
        f'border-radius:3px;font-weight:bold">{confidence:.2f}</span>'
    )


def album_text(album: MatchedAlbum | None, album_id: int | None = None) -> str:
    if album is None:
        return "no album" if album_id is None else f"album #{album_id}"
    code = album.library_code
    return f"{album.artist_name} — {album.album_title}" + (f" · {code}" if code else "")


def queue_label(item: ReviewItem) -> str:
    values = {k: (v or {}).get("value") for k, v in (item.extraction or {}).items()}
    if item.status.value == "failed":
        conf = "failed"
    elif item.confidence is None:
        conf = "nothing read"
    else:
        conf = f"{item.confidence:.2f}"
    mark = "✓ " if item.review else ""
    what = f"{values.get('artistName') or '?'} – {values.get('albumTitle') or '?'}"
    return f"{mark}{conf} · {what} · job {item.job_id[:8]} #{item.item_index}"


def count_text(total: int, shown: int, state: str, sort: str) -> str:
    """The line above the queue: how many records, which ones, in which order."""
    which = {v: k for k, v in STATES}[state].lower()
    more = f" (showing the first {shown})" if total > shown else ""
    order = f", {_ORDER_WORDS[sort]}" if shown else ""
    return f"<b>{total}</b> record(s) — {which}{order}{more}."


def why_text(state: str, sort: str) -> str:
    """One short explanation per unusual choice picked (the audit order, needs review)."""
    lines = [_WHY[k] for k in (sort, state) if k in _WHY]
    return "".join(
        f'<div class="sb-why" style="color:#0b4f8a;max-width:900px">{html.escape(t)}</div>'
        for t in lines
    )


class ReviewPanel(widgets.VBox):
    def __init__(self) -> None:
        self.client: Client | None = None
        self.background = Background()
        self.items: list[ReviewItem] = []
        self.total = 0
        self.current: int | None = None
        self.album_id: int | None = None
        self.my_user: str | None = None
        self._thumbs: dict[tuple[str, int, int, int], bytes] = {}
        self._thumb_lock = threading.Lock()
        self._slots: list[widgets.VBox] = []  # the photos' places, reused (see _slot)
        self._slot_photos: list[tuple[ReviewItem, int]] = []  # what each place shows
        self._slot_lock = threading.Lock()
        self._showing = False

        self.who = widgets.ToggleButtons(options=WHO, value="all", description="Records")
        self.state = widgets.ToggleButtons(options=STATES, value="unreviewed", description="Show")
        self.order = widgets.Dropdown(
            options=ORDERS,
            value="confidence",
            description="Order",
            layout=widgets.Layout(width="280px"),
        )
        self.order.add_class("sb-order")
        self.why = widgets.HTML()
        self.job = widgets.Dropdown(options=[("All jobs", "")], value="", description="Job")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.who.style.button_width = "110px"
        self.state.style.button_width = "110px"
        for w in (self.who, self.state, self.order, self.job):
            w.observe(self._on_filter, "value")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.count = widgets.HTML()
        self.queue = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="100%"))
        self.queue.add_class("sb-queue")
        self.queue.observe(self._on_pick, "value")
        self.message = message_box()

        # The record's widgets (about a hundred, counting layouts and styles) are made when
        # the first record is shown: every widget that exists when the page opens is sent to
        # it, so the page shows sooner without them.
        self.record = widgets.VBox(layout=widgets.Layout(display="none"))
        self._built = False
        super().__init__(
            [
                widgets.HBox([self.who, self.refresh_button]),
                widgets.HBox([self.state, self.order]),
                self.why,
                self.job,
                self.count,
                self.queue,
                self.message,
                self.record,
            ]
        )

    def _build_record(self) -> None:
        if self._built:
            return
        self._built = True
        self.header = widgets.HTML()
        self.header.add_class("sb-record-header")
        self.thumbs = widgets.HBox()
        self.large = widgets.Image(
            format="jpeg", layout=widgets.Layout(max_width="720px", display="none")
        )
        self.fields: dict[str, widgets.Text] = {}
        self.badges: dict[str, widgets.HTML] = {}
        rows = []
        for name, label in FIELD_LABELS.items():
            text = widgets.Text(
                description=label,
                continuous_update=False,
                placeholder="(not on the photos)",
                layout=widgets.Layout(width="520px"),
                style={"description_width": "120px"},
            )
            text.add_class(f"sb-field-{name}")
            self.fields[name] = text
            self.badges[name] = widgets.HTML()
            rows.append(widgets.HBox([text, self.badges[name]]))
        self.album = widgets.HTML()
        self.album.add_class("sb-album")
        self.search = widgets.Text(
            placeholder="artist or title words, or an album id",
            description="Catalog",
            continuous_update=False,
            layout=widgets.Layout(width="420px"),
        )
        self.search_button = widgets.Button(description="Search", icon="search")
        self.results = widgets.Dropdown(options=[], layout=widgets.Layout(width="420px"))
        self.use_button = widgets.Button(description="Use this album", disabled=True)
        self.no_album_button = widgets.Button(description="Not in the catalog")
        self.search.observe(lambda _c: self.search_catalog(), "value")
        self.search_button.on_click(lambda _b: self.search_catalog())
        self.use_button.on_click(lambda _b: self.use_album())
        self.no_album_button.on_click(lambda _b: self.set_album(None, None))
        self.note = widgets.Textarea(
            placeholder="A note for this record (optional)",
            description="Note",
            layout=widgets.Layout(width="520px", height="60px"),
            style={"description_width": "120px"},
        )
        self.save_button = widgets.Button(
            description="Save & next", button_style="success", icon="check"
        )
        self.save_button.add_class("sb-save")
        self.save_button.on_click(lambda _b: self.save_and_next())
        self.record.children = (
            self.header,
            widgets.HTML("<small>Click a photo's button to see it large.</small>"),
            self.thumbs,
            self.large,
            widgets.HTML(
                "<b>What is on the photos</b> — correct anything that is wrong; "
                "empty means the photos don't show it. The number beside each field is "
                "how sure the reader was (green ≥ 0.85, amber ≥ 0.6, red below)."
            ),
            *rows,
            widgets.HTML("<b>Catalog album</b>"),
            self.album,
            widgets.HBox([self.search, self.search_button]),
            widgets.HBox([self.results, self.use_button, self.no_album_button]),
            self.note,
            self.save_button,
        )

    # -- the queue ------------------------------------------------------------------------

    @guarded("message")
    def refresh(self, keep: tuple[str, int] | None = None) -> None:
        if self.client is None:
            return
        user = None
        if self.who.value == "mine":
            user = self._mine()
            if user is None:
                self._set_items([], 0)
                show(self.message, "None of your uploads has a finished record yet.", "info")
                return
        page = self.client.review_items(
            state=self.state.value,
            sort=self.order.value,
            job_id=self.job.value or None,
            user_id=user,
            limit=PAGE,
        )
        self._update_jobs(page.items)
        show(self.message, "")
        self._set_items(page.items, page.total, keep)

    def _on_filter(self, _change: dict[str, Any]) -> None:
        self.why.value = why_text(self.state.value, self.order.value)
        if not self._showing:
            self.refresh()

    def _mine(self) -> str | None:
        """The signed-in user's id, learnt from one of their own finished records (the API
        names the owner of every record in the queue, and lists the caller's own jobs)."""
        if self.my_user is None and self.client is not None:
            for job in self.client.jobs(limit=50).jobs:
                if job.completed_items + job.failed_items == 0:
                    continue
                page = self.client.review_items(state="all", job_id=job.job_id, limit=1)
                if page.items:
                    self.my_user = page.items[0].user_id
                    break
        return self.my_user

    def _update_jobs(self, items: list[ReviewItem]) -> None:
        assert self.client is not None
        options = dict(self.job.options)
        known = {v for v in options.values()}
        for job in self.client.jobs(limit=50).jobs:
            if job.job_id not in known:
                stamp = job.created_at.strftime("%Y-%m-%d %H:%M")
                options[f"{job.job_id[:8]} · {stamp} · {job.total_items} record(s)"] = job.job_id
                known.add(job.job_id)
        for item in items:
            if item.job_id not in known:
                options[f"{item.job_id[:8]} · {item.user_id}"] = item.job_id
                known.add(item.job_id)
        if len(options) != len(self.job.options):
            value = self.job.value
            with self.job.hold_trait_notifications():
                self._quiet(lambda: setattr(self.job, "options", list(options.items())))
                self._quiet(lambda: setattr(self.job, "value", value))

    def _quiet(self, change: Any) -> None:
        self._showing = True
        try:
            change()
        finally:
            self._showing = False

    def _set_items(
        self, items: list[ReviewItem], total: int, keep: tuple[str, int] | None = None
    ) -> None:
        self.items = list(items)
        self.total = total
        self._count()
        position = 0
        if keep is not None:
            for i, item in enumerate(self.items):
                if (item.job_id, item.item_index) == keep:
                    position = i
        self._fill_queue()
        if self.items:
            self.show_item(position)
        else:
            self.current = None
            self.record.layout.display = "none"

    def _count(self) -> None:
        self.count.value = count_text(
            self.total, len(self.items), self.state.value, self.order.value
        )
        self.why.value = why_text(self.state.value, self.order.value)

    def _fill_queue(self) -> None:
        self._quiet(
            lambda: setattr(
                self.queue, "options", [(queue_label(it), i) for i, it in enumerate(self.items)]
            )
        )

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._showing or change["new"] is None:
            return
        self.show_item(change["new"])

    # -- one record -----------------------------------------------------------------------

    @guarded("message")
    def show_item(self, position: int) -> None:
        """Fill the form with a record: its review when it has one, otherwise what was read.
        The header and photos go first: they are what the director waits for."""
        self._build_record()
        item = self.items[position]
        self.current = position
        self._quiet(lambda: setattr(self.queue, "value", position))
        self.header.value = self._header(item, position)
        self.large.layout.display = "none"
        self._show_thumbs(item)
        self.record.layout.display = ""
        values = {
            k: (v or {}).get("value") for k, v in (item.extraction or {}).items() if v is not None
        }
        confidences = {k: (v or {}).get("confidence") for k, v in (item.extraction or {}).items()}
        truth = item.review.fields if item.review else values
        for name, text in self.fields.items():
            text.value = truth.get(name) or ""
            self.badges[name].value = confidence_badge(confidences.get(name), name in values)
        self.note.value = (item.review.note or "") if item.review else ""
        self.search.value = ""
        self.results.options = []
        self.use_button.disabled = True
        album_id = item.review.matched_album_id if item.review else item.matched_album_id
        album = item.matched_album if album_id == item.matched_album_id else None
        self.set_album(album_id, album)
        if album_id is not None and album is None:
            self.background.run(self._lookup_album, position, album_id)
        if position + 1 < len(self.items):
            self.background.run(self._prefetch, self.items[position + 1])

    def _header(self, item: ReviewItem, position: int) -> str:
        bits = [
            f"<b>Record {position + 1} of {len(self.items)}</b>",
            f"job {html.escape(item.job_id[:8])}, item {item.item_index}",
            f"uploaded by {html.escape(item.user_id)}",
        ]
        if item.extractor:
            bits.append(f"read by {html.escape(item.extractor)}")
        if item.prompt_version:
            bits.append(f"prompt {html.escape(item.prompt_version)}")
        text = " · ".join(bits)
        if item.review:
            text += (
                f"<br>✓ Reviewed by {html.escape(item.review.reviewer)} "
                f"(revision {item.review.revision}); saving again keeps the earlier review "
                "as history."
            )
        if item.error_message:
            text += (
                '<br><span style="color:#8a1c1c">Could not be read: '
                f"{html.escape(item.error_message)}</span> — type what the photos show."
            )
        return f'<div style="font-size:1.05em;margin:6px 0">{text}</div>'

    def _slot(self, i: int) -> widgets.VBox:
        """The i-th photo's place (thumbnail and button), made once and reused for every
        record: new widgets per record would each be sent to the page again."""
        while len(self._slots) <= i:
            n = len(self._slots)
            image = widgets.Image(
                format="jpeg", layout=widgets.Layout(height=f"{THUMB_PX}px", display="none")
            )
            button = widgets.Button(
                tooltip="Show this photo large", layout=widgets.Layout(width=f"{THUMB_PX}px")
            )
            button.add_class("sb-photo-button")
            button.on_click(lambda _b, n=n: self._show_slot_large(n))
            self._slots.append(widgets.VBox([image, button]))
        return self._slots[i]

    def _show_slot_large(self, i: int) -> None:
        item, n = self._slot_photos[i]
        self.show_large(item, n)

    def _show_thumbs(self, item: ReviewItem) -> None:
        pending = []
        with self._slot_lock:
            self._slot_photos = []
            for i, photo in enumerate(item.photos):
                image, button = self._slot(i).children
                cached = self._thumbs.get((item.job_id, item.item_index, photo.index, THUMB_PX))
                # Hidden until its picture is there: an empty image is a broken-image icon.
                image.layout.display = "none" if cached is None else ""
                image.value = cached if cached is not None else b""
                if cached is None:
                    pending.append((i, photo.index))
                button.description = f"{photo.index + 1}. {photo.photo_type}"
                self._slot_photos.append((item, photo.index))
            self.thumbs.children = tuple(self._slots[: len(item.photos)])
        if pending:
            self.background.run(self._load_thumbs, item, pending)

    def _thumb(self, item: ReviewItem, n: int) -> bytes:
        key = (item.job_id, item.item_index, n, THUMB_PX)
        data = self._thumbs.get(key)
        if data is None:
            assert self.client is not None
            data = self.client.photo(item.job_id, item.item_index, n, size=THUMB_PX)
            with self._thumb_lock:
                self._thumbs[key] = data
        return data

    def _load_thumbs(self, item: ReviewItem, pending: list[tuple[int, int]]) -> None:
        for i, n in pending:
            data = self._thumb(item, n)
            with self._slot_lock:
                # The director may have moved on: the place is another record's by now.
                if i >= len(self._slot_photos) or self._slot_photos[i][0] is not item:
                    continue
                image = self._slots[i].children[0]
                image.value = data
                image.layout.display = ""

    def _prefetch(self, item: ReviewItem) -> None:
        for photo in item.photos:
            self._thumb(item, photo.index)

    def show_large(self, item: ReviewItem, n: int) -> None:
        def load() -> None:
            assert self.client is not None
            self.large.value = self.client.photo(item.job_id, item.item_index, n, size=LARGE_PX)
            self.large.layout.display = ""

        self.background.run(load, on_error=lambda exc: show(self.message, str(exc), "error"))

    # -- the album ------------------------------------------------------------------------

    def set_album(self, album_id: int | None, album: MatchedAlbum | None) -> None:
        self.album_id = album_id
        if album_id is None:
            self.album.value = (
                "<i>No catalog album</i> — search below if the record is in the catalog."
            )
            return
        self.album.value = f"<b>{html.escape(album_text(album, album_id))}</b> (#{album_id})"

    def _lookup_album(self, position: int, album_id: int) -> None:
        assert self.client is not None
        found = self.client.catalog_search(str(album_id), limit=1)
        if self.current == position and self.album_id == album_id and found:
            self.set_album(album_id, found[0])

    @guarded("message")
    def search_catalog(self) -> None:
        q = self.search.value.strip()
        if not q or self.client is None:
            return
        albums = self.client.catalog_search(q, limit=20)
        self.results.options = [(f"{album_text(a)} (#{a.id})", a) for a in albums]
        self.use_button.disabled = not albums
        if not albums:
            show(self.message, f"No catalog album matches '{q}'.", "warn")
        else:
            show(self.message, "")

    def use_album(self) -> None:
        album = self.results.value
        if album is not None:
            self.set_album(album.id, album)

    # -- saving ---------------------------------------------------------------------------

    @guarded("message")
    def save_and_next(self) -> None:
        if self.client is None or self.current is None:
            return
        position = self.current
        item = self.items[position]
        fields = {name: (text.value.strip() or None) for name, text in self.fields.items()}
        saved = self.client.save_review(
            item.job_id,
            item.item_index,
            fields,
            self.album_id,
            self.note.value.strip() or None,
        )
        changed = sum(1 for v in saved.verdicts.values() if v != "correct")
        show(
            self.message,
            f"Saved job {item.job_id[:8]} item {item.item_index}: "
            + (f"{changed} field(s) corrected." if changed else "every field was right."),
            "ok",
        )
        item.review = saved
        if self.state.value in ("unreviewed", "needsReview"):
            del self.items[position]
            self.total -= 1
        else:
            position += 1
        self._fill_queue()
        self._count()
        if not self.items:
            self.record.layout.display = "none"
            self.current = None
            show(self.message, "Saved. Nothing left to review with these filters.", "ok")
            return
        self.show_item(min(position, len(self.items) - 1))
