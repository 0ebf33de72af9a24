"""Review: the queue (least confident first, newest first, or the audit sample; all, or only
those that need review), one record at a time: its photos, the six fields pre-filled with what
was read and how sure the reader was, the matched catalog album with a catalog search to
change it, a note, and Save & next. Reviewed records can be reopened.

Several reviewers share one queue. The record to review comes from the server's `next`, which
leases it to this reviewer, so two pages never hand out the same one; a record picked from the
list is leased first (someone else's lease says who holds it and until when), and a record left
unsaved is released. Every save carries the version the form was filled from: when a colleague
saved in between, the page shows both reviews side by side and lets the director choose, instead
of overwriting theirs."""

from __future__ import annotations

import contextlib
import html
import threading
from datetime import UTC, datetime
from typing import Any

import ipywidgets as widgets

from scanbatch.audit import LeaseView, ReviewItem, ReviewView
from scanbatch.client import ApiError, Client, StaleVersion
from scanbatch.models import MatchedAlbum
from scanbatch.names import FIELD_LABELS
from scanbatch.workbench.ui import Background, guarded, message_box, show

THUMB_PX = 160
LARGE_PX = 1200
PAGE = 100  # the review route's largest page
# Thumbnails fetched ahead for this many records: those `next` will most likely hand out after
# the one open (the list's first free ones; a colleague may take one of them meanwhile).
PREFETCH = 3
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
# The queues `next` hands records out of; reviewed records are reopened from the list instead,
# each leased as it is opened.
NEXT_STATES = ("unreviewed", "needsReview")


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


def clock(moment: datetime) -> str:
    """A time of today as the director's clock shows it (HH:MM); another day gets its date."""
    local = moment.astimezone()
    if local.date() == datetime.now(local.tzinfo).date():
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def active(lease: LeaseView | None) -> LeaseView | None:
    """The lease while it lasts; an expired one holds nothing."""
    return lease if lease is not None and lease.until > datetime.now(UTC) else None


def lease_mark(lease: LeaseView | None, me: str | None = None) -> str:
    """Who is on a record, beside its label: "anna is reviewing it (until 14:32)", or "✎ you"
    for one's own. Words, not a lock sign: a browser without an emoji font shows 🔒 as a box."""
    lease = active(lease)
    if lease is None:
        return ""
    if me is not None and lease.holder == me:
        return f"✎ you (until {clock(lease.until)})"
    return f"{lease.holder} is reviewing it (until {clock(lease.until)})"


def held_text(lease: LeaseView) -> str:
    return f"{lease.holder} is reviewing this record (until {clock(lease.until)})"


def photo_note(item: ReviewItem) -> str:
    """Above the photos: how to see one large, or, for a record whose photos the retention
    removed, a sentence in their place (never empty images)."""
    pruned = item.photos_pruned
    if pruned is None:
        return "<small>Click a photo's button to see it large.</small>"
    return (
        '<div style="padding:8px;margin:4px 0;background:#f3f0e6;border-left:4px solid #b08900">'
        f"<b>No photos:</b> they were removed on {pruned.at:%Y-%m-%d} "
        f"({html.escape(pruned.why)}). What was read stays below: to review it, check it against "
        "the sleeve and label of the record in hand.</div>"
    )


def queue_label(item: ReviewItem, me: str | None = None) -> str:
    values = {k: (v or {}).get("value") for k, v in (item.extraction or {}).items()}
    if item.status.value == "failed":
        conf = "failed"
    elif item.confidence is None:
        conf = "nothing read"
    else:
        conf = f"{item.confidence:.2f}"
    mark = "✓ " if item.review else ""
    what = f"{values.get('artistName') or '?'} – {values.get('albumTitle') or '?'}"
    lease = lease_mark(item.lease, me)
    gone = " · no photos" if item.photos_pruned else ""
    return f"{mark}{conf} · {what} · job {item.job_id[:8]} #{item.item_index}{gone}" + (
        f" · {lease}" if lease else ""
    )


def conflict_html(
    theirs: ReviewView,
    mine: dict[str, str | None],
    their_album: str,
    my_album: str,
    my_note: str | None,
) -> str:
    """What a colleague saved while this reviewer had the record open, field by field beside
    what this reviewer typed, and the two ways on (the buttons under it)."""
    who = html.escape(theirs.reviewer)
    rows = [
        (label, theirs.fields.get(name), mine.get(name)) for name, label in FIELD_LABELS.items()
    ]
    rows.append(("Catalog album", their_album, my_album))
    rows.append(("Note", theirs.note, my_note))
    cells = []
    for label, their, my in rows:
        differs = (their or "") != (my or "")
        style = ' style="background:#fff4e0;font-weight:bold"' if differs else ""
        cells.append(
            f"<tr{style}><td>{html.escape(label)}</td>"
            f"<td>{html.escape(their or '—')}</td><td>{html.escape(my or '—')}</td></tr>"
        )
    return (
        '<div class="sb-conflict-text" style="max-width:900px">'
        f'<div style="color:#8a1c1c;font-size:1.1em"><b>⚠ {who} saved this record at '
        f"{clock(theirs.reviewed_at)}, while you had it open.</b></div>"
        f"<div>Your changes are <b>not saved yet</b>, and {who}'s review was not overwritten. "
        "Compare the two (differences highlighted):</div>"
        '<table style="border-collapse:collapse;margin:6px 0" cellpadding="4" border="1">'
        f"<tr><th>Field</th><th>{who} saved</th><th>You typed</th></tr>{''.join(cells)}</table>"
        f"<div><b>Reload their review</b> puts {who}'s values in the form (what you typed is "
        "dropped): check them, correct anything, and Save &amp; next. <b>Save mine instead</b> "
        f"replaces {who}'s review with yours ({who}'s stays in the record's history).</div></div>"
    )


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


Key = tuple[str, int]  # (job id, item index): one record


def key_of(item: ReviewItem) -> Key:
    return (item.job_id, item.item_index)


class ReviewPanel(widgets.VBox):
    def __init__(self) -> None:
        self._client: Client | None = None
        self.background = Background()
        self.items: list[ReviewItem] = []  # the list's page of the queue
        self.total = 0
        self.shown: ReviewItem | None = None  # the record in the form
        self.leased: Key | None = None  # the record whose lease this page holds
        self.album_id: int | None = None
        self.album_obj: MatchedAlbum | None = None
        self.my_user: str | None = None
        self._thumbs: dict[tuple[str, int, int, int], bytes] = {}
        self._thumb_lock = threading.Lock()
        self._slots: list[widgets.VBox] = []  # the photos' places, reused (see _slot)
        self._slot_photos: list[tuple[ReviewItem, int]] = []  # what each place shows
        self._slot_lock = threading.Lock()
        self._showing = False
        # The colleague's review a save ran into (412), until reloaded or saved over.
        self._stale: tuple[Key, ReviewView] | None = None

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
        self.refresh_button.add_class("sb-refresh")
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
        self.message.add_class("sb-review-message")

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

    @property
    def client(self) -> Client | None:
        return self._client

    @client.setter
    def client(self, client: Client | None) -> None:
        """Signing in again (another reviewer's token) leaves the record the last one held."""
        if client is not self._client:
            self._leave()
            self._close_record()
        self._client = client

    @property
    def current(self) -> int | None:
        """The open record's place in the list (None when it is not on the list's page)."""
        return self._position(self.shown)

    def _position(self, item: ReviewItem | None) -> int | None:
        if item is None:
            return None
        key = key_of(item)
        for i, it in enumerate(self.items):
            if key_of(it) == key:
                return i
        return None

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
        # A colleague's save met (412): theirs beside ours, and the two ways on.
        self.conflict_text = widgets.HTML()
        self.reload_button = widgets.Button(
            description="Reload their review", button_style="primary", icon="refresh"
        )
        self.reload_button.layout.width = "210px"
        self.reload_button.add_class("sb-reload")
        self.reload_button.on_click(lambda _b: self.reload_theirs())
        self.save_mine_button = widgets.Button(
            description="Save mine instead", button_style="warning"
        )
        self.save_mine_button.layout.width = "180px"
        self.save_mine_button.add_class("sb-save-mine")
        self.save_mine_button.on_click(lambda _b: self.save_mine())
        self.conflict = widgets.VBox(
            [self.conflict_text, widgets.HBox([self.reload_button, self.save_mine_button])],
            layout=widgets.Layout(
                display="none", border="2px solid #b71c1c", padding="8px", margin="6px 0"
            ),
        )
        self.conflict.add_class("sb-conflict")
        self.photo_note = widgets.HTML()  # how to see a photo large, or why there is none
        self.photo_note.add_class("sb-photo-note")
        self.record.children = (
            self.header,
            self.photo_note,
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
            self.conflict,
            self.save_button,
        )

    # -- the queue ------------------------------------------------------------------------

    def _filters(self) -> dict[str, Any] | None:
        """The director's choices as the queue's and `next`'s query; None: "mine" while
        this user has no finished record (nothing to ask for)."""
        user = None
        if self.who.value == "mine":
            user = self._mine()
            if user is None:
                return None
        return {
            "state": self.state.value,
            "sort": self.order.value,
            "job_id": self.job.value or None,
            "user_id": user,
        }

    @guarded("message")
    def refresh(self, *, next_record: bool = True) -> None:
        """The list again (who is on which record); the record open stays open, and with none
        open the server hands out the next one (unless `next_record` is False: a list updated
        while the director is on another tab leases nothing)."""
        if self.client is None:
            return
        query = self._filters()
        if query is None:
            self._leave()
            self._close_record()
            self._set_items([], 0)
            show(self.message, "None of your uploads has a finished record yet.", "info")
            return
        if self.shown is None and next_record:
            if query["state"] in NEXT_STATES:
                # `next` before the list, so the list already shows this page's own lease.
                nxt = self._hand_out(query)
                self._list(query)
            else:
                self._list(query)
                nxt = self._hand_out(query)
            if nxt is not None:
                show(self.message, "")
                self._show_record(nxt, leased=True)
            else:
                self._nothing_left("")
            return
        self._list(query)
        show(self.message, "")
        self._show_header()

    def _hand_out(self, query: dict[str, Any], after: Key | None = None) -> ReviewItem | None:
        """The record to open next, leased to this reviewer: from `next` for the records to
        review; among reviewed ones, the list's next that nobody else has open."""
        assert self.client is not None
        if query["state"] in NEXT_STATES:
            return self.client.next_review(**query)
        start = 0
        for i, item in enumerate(self.items):
            if after is not None and key_of(item) == after:
                start = i + 1
        me = self._me()
        for item in self.items[start:]:
            lease = active(item.lease)
            if lease is not None and lease.holder != me:
                continue
            try:
                return self.client.take_lease(*key_of(item))
            except ApiError as exc:
                if exc.status != 409:  # 409: taken since the list was read
                    raise
        return None

    def _list(self, query: dict[str, Any]) -> None:
        assert self.client is not None
        page = self.client.review_items(**query, limit=PAGE)
        self._update_jobs(page.items)
        self._set_items(page.items, page.total)

    def _on_filter(self, _change: dict[str, Any]) -> None:
        self.why.value = why_text(self.state.value, self.order.value)
        if not self._showing:
            # Other filters, another record: the one open is left, unsaved, to the others.
            self._leave()
            self._close_record()
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

    def _set_items(self, items: list[ReviewItem], total: int) -> None:
        self.items = list(items)
        self.total = total
        self._count()
        self._fill_queue()

    def _count(self) -> None:
        self.count.value = count_text(
            self.total, len(self.items), self.state.value, self.order.value
        )
        self.why.value = why_text(self.state.value, self.order.value)

    def _fill_queue(self) -> None:
        me = self._me()
        options = [(queue_label(it, me), key_of(it)) for it in self.items]
        selected = key_of(self.shown) if self.shown is not None else None

        def fill() -> None:
            # Not under hold_trait_notifications: new options select their first at the end
            # of the hold, over the value set inside it.
            self.queue.options = options
            self.queue.value = selected if selected in {k for _l, k in options} else None

        self._quiet(fill)

    def _select_open(self) -> None:
        """The list's selection back on the record in the form."""
        keys = {k for _l, k in self.queue.options}
        selected = key_of(self.shown) if self.shown is not None else None
        self._quiet(lambda: setattr(self.queue, "value", selected if selected in keys else None))

    def _me(self) -> str | None:
        """Who this page's leases name: learnt from the first lease the server gave it."""
        if self.leased is not None and self.shown is not None:
            lease = self.shown.lease
            if lease is not None:
                self.my_user = self.my_user or lease.holder
                return lease.holder
        return self.my_user

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._showing or change["new"] is None:
            return
        if self.shown is not None and change["new"] == key_of(self.shown):
            return
        self.pick(change["new"])

    @guarded("message")
    def pick(self, key: Key) -> None:
        """Open a record picked from the list: lease it first; someone else's lease keeps it
        closed, and the record open so far stays open (and leased) then."""
        if self.client is None:
            return
        try:
            item = self.client.take_lease(*key)
        except ApiError as exc:
            self._select_open()
            if exc.status == 409:
                show(
                    self.message,
                    f"{self._holder(key, exc)}. It is theirs until they save it or leave it: "
                    "pick another record.",
                    "warn",
                )
                return
            raise
        if self.leased is not None and self.leased != key:
            self._leave()
        show(self.message, "")
        self._show_record(item, leased=True)

    def _holder(self, key: Key, exc: ApiError) -> str:
        """Who holds a record and until when, from the list as it is now (the 409 names the
        holder; the list also knows until when)."""
        query = self._filters()
        if query is not None:
            with contextlib.suppress(ApiError):
                self._list(query)
        for item in self.items:
            lease = active(item.lease) if key_of(item) == key else None
            if lease is not None:
                return held_text(lease)
        return exc.message.rstrip(".")

    def _leave(self) -> None:
        """Give back the lease of the record open (leaving it without saving)."""
        key, self.leased = self.leased, None
        self._stale = None
        if key is None or self._client is None:
            return
        # Expired or taken over meanwhile: then nothing of ours is held any more.
        with contextlib.suppress(ApiError):
            self._client.release_lease(*key)
        for i, item in enumerate(self.items):
            if key_of(item) == key and item.lease is not None:
                self.items[i] = item.model_copy(update={"lease": None})

    def _close_record(self) -> None:
        self.shown = None
        self._stale = None
        self.record.layout.display = "none"

    def _nothing_left(self, prefix: str) -> None:
        """No record for this reviewer: say whether colleagues have the rest."""
        self._close_record()
        self._select_open()
        holders = sorted({lease.holder for it in self.items if (lease := active(it.lease))})
        if holders:
            show(
                self.message,
                f"{prefix}Every record left with these filters is being reviewed right now "
                f"by {', '.join(holders)}. Refresh in a while.",
                "info",
            )
        else:
            show(self.message, f"{prefix}Nothing left to review with these filters.", "ok")

    # -- one record -----------------------------------------------------------------------

    def _show_record(self, item: ReviewItem, *, leased: bool, fill_queue: bool = True) -> None:
        """Fill the form with a record: its review when it has one, otherwise what was read.
        The header and photos go first: they are what the director waits for."""
        self._build_record()
        self.shown = item
        self.leased = key_of(item) if leased else None
        self._stale = None
        position = self._position(item)
        if position is not None:
            self.items[position] = item  # the fresher copy (its lease, version, review)
        self._show_header()
        self.large.layout.display = "none"
        self._show_thumbs(item)
        self.record.layout.display = ""
        self.conflict.layout.display = "none"
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
            self.background.run(self._lookup_album, key_of(item), album_id)
        if fill_queue:
            self._fill_queue()
        self.background.run(self._prefetch, self._likely_next())

    def _likely_next(self) -> list[ReviewItem]:
        """The records `next` will most likely hand out after this one: the list's first that
        nobody else holds (its order is `next`'s order)."""
        me = self._me()
        skip = key_of(self.shown) if self.shown is not None else None
        out = []
        for item in self.items:
            lease = active(item.lease)
            if key_of(item) == skip or (lease is not None and lease.holder != me):
                continue
            out.append(item)
            if len(out) == PREFETCH:
                break
        return out

    def _show_header(self) -> None:
        if self.shown is not None and self._built:
            self.header.value = self._header(self.shown, self._position(self.shown))

    def _header(self, item: ReviewItem, position: int | None) -> str:
        where = (
            f"<b>Record {position + 1} of {len(self.items)}</b>"
            if position is not None
            else "<b>Record</b> (not in the list above)"
        )
        bits = [
            where,
            f"job {html.escape(item.job_id[:8])}, item {item.item_index}",
            f"uploaded by {html.escape(item.user_id)}",
        ]
        if item.extractor:
            bits.append(f"read by {html.escape(item.extractor)}")
        if item.prompt_version:
            bits.append(f"prompt {html.escape(item.prompt_version)}")
        text = " · ".join(bits)
        lease = active(item.lease)
        if lease is not None and self.leased == key_of(item):
            text += (
                f"<br>✎ Yours until {clock(lease.until)}: nobody else is handed this record "
                "while you have it open."
            )
        if item.review:
            text += (
                f"<br>✓ Reviewed by {html.escape(item.review.reviewer)} "
                f"(revision {item.review.revision}); saving again keeps the earlier review "
                "as history."
            )
        if item.error_message:
            shows = "the sleeve and label show" if item.photos_pruned else "the photos show"
            text += (
                '<br><span style="color:#8a1c1c">Could not be read: '
                f"{html.escape(item.error_message)}</span> — type what {shows}."
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
        self.photo_note.value = photo_note(item)
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

    def _prefetch(self, items: list[ReviewItem]) -> None:
        """Thumbnails of the records likely next, so Save & next shows them at once. Only
        photos: asking `next` ahead would lease a second record, kept from colleagues."""
        for item in items:
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
        self.album_obj = album
        if album_id is None:
            self.album.value = (
                "<i>No catalog album</i> — search below if the record is in the catalog."
            )
            return
        self.album.value = f"<b>{html.escape(album_text(album, album_id))}</b> (#{album_id})"

    def _lookup_album(self, key: Key, album_id: int) -> None:
        found = self._album(album_id)
        still = self.shown is not None and key_of(self.shown) == key
        if still and self.album_id == album_id and found is not None:
            self.set_album(album_id, found)

    def _album(self, album_id: int) -> MatchedAlbum | None:
        assert self.client is not None
        found = self.client.catalog_search(str(album_id), limit=1)
        return found[0] if found and found[0].id == album_id else None

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

    def _typed(self) -> tuple[dict[str, str | None], str | None]:
        fields = {name: (text.value.strip() or None) for name, text in self.fields.items()}
        return fields, self.note.value.strip() or None

    @guarded("message")
    def save_and_next(self) -> None:
        """Save with the version the form was filled from, then ask the server for the next
        record. A colleague's save in between (412) or their lease (409) stops it: nothing
        of theirs is overwritten, nothing typed here is lost."""
        if self.client is None or self.shown is None:
            return
        item = self.shown
        fields, note = self._typed()
        try:
            saved = self.client.save_review(
                item.job_id, item.item_index, fields, self.album_id, note, version=item.version
            )
        except StaleVersion as exc:
            # A colleague could only save if nobody held the record: this page's lease is gone.
            self._lost_lease(item)
            if exc.current is None:  # theirs could not be read back: say what the server said
                self._stale = None
                show(self.message, f"Not saved: {exc.message}", "warn")
                return
            self._show_conflict(item, exc.current, fields, note)
            return
        except ApiError as exc:
            if exc.status != 409:
                raise
            self._lost_lease(item)
            show(
                self.message,
                f"Not saved: {self._holder(key_of(item), exc)}. What you typed is still here; "
                "save again once they are done, or move on to another record.",
                "warn",
            )
            return
        if self.leased == key_of(item):
            self.leased = None  # the save gave the lease back
        changed = sum(1 for v in saved.verdicts.values() if v != "correct")
        done = f"Saved job {item.job_id[:8]} item {item.item_index}: " + (
            f"{changed} field(s) corrected." if changed else "every field was right."
        )
        position = self._position(item)
        if position is not None:
            if self.state.value in ("unreviewed", "needsReview"):
                del self.items[position]
                self.total -= 1
            else:
                self.items[position] = item.model_copy(
                    update={"review": saved, "version": saved.version, "lease": None}
                )
        self._close_record()
        query = self._filters()
        nxt = self._hand_out(query, after=key_of(item)) if query is not None else None
        if nxt is not None:
            show(self.message, done, "ok")
            # The record first (what the director waits for), the list's news after it.
            self._show_record(nxt, leased=True, fill_queue=query is None)
        if query is not None:
            self._list(query)
        if nxt is None:
            self._count()
            self._nothing_left(f"{done} ")
        else:
            self._show_header()
            self._select_open()

    def _lost_lease(self, item: ReviewItem) -> None:
        """A save refused: the record's lease is no longer this page's. The list (who is on
        which record) and the header say so."""
        if self.leased == key_of(item):
            self.leased = None
        query = self._filters()
        if query is not None:
            with contextlib.suppress(ApiError):
                self._list(query)
        self._show_header()

    def _show_conflict(
        self,
        item: ReviewItem,
        theirs: ReviewView,
        fields: dict[str, str | None],
        note: str | None,
    ) -> None:
        self._stale = (key_of(item), theirs)
        my_album = (
            "no album" if self.album_id is None else album_text(self.album_obj, self.album_id)
        )
        their_album = my_album  # the same album reads the same on both sides
        if theirs.matched_album_id != self.album_id:
            their_album = "no album"
            if theirs.matched_album_id is not None:
                album = (
                    item.matched_album
                    if theirs.matched_album_id == item.matched_album_id
                    else self._album(theirs.matched_album_id)
                )
                their_album = album_text(album, theirs.matched_album_id)
        self.conflict_text.value = conflict_html(theirs, fields, their_album, my_album, note)
        self.conflict.layout.display = ""
        show(
            self.message,
            f"Not saved: {theirs.reviewer} saved this record at {clock(theirs.reviewed_at)}, "
            "while you had it open. See both reviews below the form and choose.",
            "warn",
        )

    @guarded("message")
    def reload_theirs(self) -> None:
        """The colleague's review into the form, with its version: what a save goes on from."""
        if self.client is None or self._stale is None or self.shown is None:
            return
        key, theirs = self._stale
        try:
            fresh = self.client.take_lease(*key)
        except ApiError as exc:
            if exc.status != 409:
                raise
            held = self._holder(key, exc)
            update = {"review": theirs, "version": theirs.version}
            self._show_record(self.shown.model_copy(update=update), leased=False)
            show(self.message, f"Loaded {theirs.reviewer}'s review. {held}.", "warn")
            return
        self._show_record(fresh, leased=True)
        reviewer = fresh.review.reviewer if fresh.review else theirs.reviewer
        show(
            self.message,
            f"Loaded {reviewer}'s review into the form. Correct anything that is wrong, then "
            "Save & next.",
            "ok",
        )

    def save_mine(self) -> None:
        """Save what was typed here over the colleague's review, knowingly (theirs stays in
        the history): the save goes on from their version."""
        if self._stale is None or self.shown is None:
            return
        _key, theirs = self._stale
        self.shown = self.shown.model_copy(update={"version": theirs.version})
        self._stale = None
        self.conflict.layout.display = "none"
        self.save_and_next()
