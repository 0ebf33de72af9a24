"""Dashboard: how good the reader is on ALL the records, estimated from the audit sample with a
95% range, beside the figures of the reviewed records alone (which are the hardest ones when
the queue handed them out least confident first); how many more audit reviews would pin it
down; the wrong fields expected among the unreviewed; per field the confidence above which no
review is needed; a reliability diagram from the audit reviews; accuracy week by week with a
warning when it dropped; overall, by prompt version, extractor or model."""

from __future__ import annotations

import html
import io
from typing import Any

import ipywidgets as widgets

from scanbatch.client import Client
from scanbatch.names import FIELD_LABELS
from scanbatch.workbench.ui import guarded, message_box, show

GROUPINGS = (
    ("Overall", "none"),
    ("By prompt version", "promptVersion"),
    ("By extractor", "extractor"),
    ("By model", "model"),
)
MATCH_LABEL = "Catalog match"
OVERALL_LABEL = "All six fields together"
# The figure's width in pixels is about 13 × 90: inside the page at 1280 px.
FIGURE_INCHES = (13, 8.6)

_CELL_STYLE = "padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top"
_HEAD_STYLE = "padding:4px 8px;border-bottom:2px solid #999;text-align:left;vertical-align:bottom"
_CELL = f'style="{_CELL_STYLE}"'
_HEAD = f'style="{_HEAD_STYLE}"'
# The all-records column is tinted like the figure's bars: the two are one figure.
_ALL_CELL = f'style="{_CELL_STYLE};background:#e8f1fb"'
_ALL_HEAD = f'style="{_HEAD_STYLE};background:#e8f1fb;min-width:170px"'
_LABEL_CELL = f'style="{_CELL_STYLE};white-space:nowrap"'
_ALL_COLOUR = "#1f77b4"
_REVIEWED_COLOUR = "#d62728"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


# What a record with no value for the grouping is grouped under (the OCR reader has no model
# or prompt version, say): not "all", which the whole reads as.
_NO_VALUE = {
    "promptVersion": "no prompt version",
    "model": "no model",
    "extractor": "no extractor",
}


def group_name(group: dict[str, Any], group_by: str = "none") -> str:
    if group["group"] is not None:
        return str(group["group"])
    return _NO_VALUE.get(group_by, "All records")


def wrong_fields(group: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(field, times wrong, times judged), most often wrong first. Wrong: the truth has the
    field and it was not read exactly, or it was read but the photos don't show it."""
    rows = []
    for name, f in group["fields"].items():
        judged = f["n"] + f["spurious"]
        wrong = f["n"] - f["exact"] + f["spurious"]
        if judged:
            rows.append((name, wrong, judged))
    return sorted(rows, key=lambda r: (-r[1] / r[2], -r[1], r[0]))


def estimate_text(entry: dict[str, Any]) -> str:
    """The all-records figure of a field (or the match, or overall): the estimate with its 95%
    range, or the note saying how many audit reviews it still needs."""
    est = entry.get("estimate")
    if est is None:
        return entry.get("estimateNote") or "not known yet"
    if est["method"] == "all-reviewed":
        return f"{_pct(est['accuracy'])} (every record reviewed)"
    low, high = _pct(est["low"]), _pct(est["high"])
    return f"{_pct(est['accuracy'])} ({low[:-1]}–{high})"


def reviewed_text(entry: dict[str, Any], reviewed: int) -> str:
    if not reviewed or entry.get("reviewedAccuracy") is None:
        return "–"
    return f"{_pct(entry['reviewedAccuracy'])} of {reviewed:,}"


def reviewed_order(group: dict[str, Any]) -> str:
    """Where the reviewed records came from: the reason their figure may not stand for all."""
    audit, reviewed = group.get("auditReviews") or 0, group.get("reviewed") or 0
    picked = reviewed - audit
    if not reviewed:
        return "none yet"
    if not picked:
        return "all in the audit sample"
    if not audit:
        return "none in the audit sample: picked e.g. least confident first, the hardest"
    return (
        f"{audit:,} in the audit sample, {picked:,} outside it (picked e.g. least confident first)"
    )


# A field with no threshold says so in its cell; the server's note, why and what it takes,
# stands once under the table for every field it concerns (six times in the cells it filled
# the table).
NO_THRESHOLD = "not yet (see below)"


def threshold_text(threshold: dict[str, Any] | None) -> str:
    if not threshold:
        return "–"
    confidence = threshold.get("confidence")
    if confidence is None:
        return NO_THRESHOLD if threshold.get("note") else "not yet"
    records = _count(threshold.get("noReviewNeeded"))
    return f"confidence {confidence:.2f} or more: {records} record(s) need no review"


def wrong_left_text(wrong: dict[str, Any] | None) -> str:
    if not wrong:
        return "–"
    return f"about {wrong['expected']:,.0f} ({wrong['low']:,.0f}–{wrong['high']:,.0f})"


def two_points_text(n: int | None) -> str:
    if n is None:
        return ""
    if n <= 0:
        return "Every figure here is already known within ±2 points."
    return f"Review {n:,} more audit record(s) to know every figure here within ±2 points."


def drift_warning(group: dict[str, Any]) -> str:
    """A visible warning naming what got worse in the latest week, or '' when nothing did."""
    drift = group.get("drift") or {}
    worse = []
    if drift.get("overall"):
        worse.append("all fields together")
    worse += [FIELD_LABELS.get(n, n) for n, flag in (drift.get("fields") or {}).items() if flag]
    if drift.get("match"):
        worse.append("the catalog match")
    if not worse:
        return ""
    return (
        '<div class="sb-drift" style="color:#8a1c1c;background:#fdecea;padding:6px 10px;'
        'border-radius:4px;margin:6px 0"><b>⚠ The reader got worse in the latest week</b> '
        f"({html.escape(', '.join(worse))}): that week's range lies wholly below the earlier "
        "weeks'. Check what changed — a new prompt version, another model, a new kind of "
        "photo.</div>"
    )


def _rows(group: dict[str, Any]) -> list[tuple[str, dict[str, Any], str, str, str]]:
    """(label, figures, threshold, wrong left, audit reviews for ±2 points) per table row."""
    rows = []
    for name, label in FIELD_LABELS.items():
        f = group["fields"].get(name)
        if f is None:
            continue
        est = f.get("estimate") or {}
        rows.append(
            (
                label,
                f,
                threshold_text(f.get("threshold")),
                wrong_left_text(f.get("wrongLeft")),
                _count(est.get("reviewsForTwoPoints")),
            )
        )
    planning = group.get("planning") or {}
    overall_est = group["overall"].get("estimate") or {}
    needs = planning.get("needsReview")
    rows.append(
        (
            OVERALL_LABEL,
            group["overall"],
            "–" if needs is None else f"{needs:,} record(s) still need review",
            wrong_left_text(planning.get("wrongFieldsLeft")),
            _count(overall_est.get("reviewsForTwoPoints")),
        )
    )
    match_est = group["match"].get("estimate") or {}
    rows.append(
        (MATCH_LABEL, group["match"], "–", "–", _count(match_est.get("reviewsForTwoPoints")))
    )
    return rows


def _headline(group: dict[str, Any]) -> str:
    population = group.get("population")
    overall = group["overall"]
    est = overall.get("estimate")
    planning = group.get("planning") or {}
    bits = []
    if est is not None:
        bits.append(
            f"On all {_count(population)} records the reader gets "
            f"<b>{html.escape(estimate_text(overall))}</b> of the fields right."
        )
        two = two_points_text(planning.get("reviewsForTwoPoints", est.get("reviewsForTwoPoints")))
        if two:
            bits.append(html.escape(two))
    elif overall.get("estimateNote"):
        bits.append(
            f"How good the reader is on all {_count(population)} records is not known yet: "
            + html.escape(overall["estimateNote"])
        )
    wrong = planning.get("wrongFieldsLeft")
    if wrong:
        bits.append(
            f"Among the {_count(planning.get('unreviewed'))} records nobody reviewed, expect "
            f"{html.escape(wrong_left_text(wrong))} wrong fields."
        )
    needs, unreviewed = planning.get("needsReview"), planning.get("unreviewed")
    if needs is not None and needs == unreviewed:
        bits.append(
            "All of them still need review: no field has a confidence yet above which the "
            "reader is right 99% of the time."
        )
    elif needs is not None:
        bits.append(
            f"{needs:,} of them need review (Review tab → Show: Needs review); the reader is "
            f"sure enough of the other {_count((unreviewed or 0) - needs)}."
        )
    return " ".join(bits)


def threshold_notes(group: dict[str, Any]) -> str:
    """Under the table: each distinct no-threshold note once, naming the fields it is for."""
    fields: dict[str, list[str]] = {}
    for name, label in FIELD_LABELS.items():
        t = (group["fields"].get(name) or {}).get("threshold") or {}
        if t.get("confidence") is None and t.get("note"):
            fields.setdefault(t["note"], []).append(label)
    if not fields:
        return ""
    # One heading, then a quiet line per note: with the reader good, the notes differ only in
    # a count, and four bold paragraphs of it outweighed the table above.
    return (
        '<div class="sb-threshold-note" style="margin:6px 0;max-width:1150px">'
        "<b>Sure enough to skip review — not known yet</b>"
        + "".join(
            f'<div style="color:#444;font-size:0.92em;margin-left:12px">'
            f"{html.escape(', '.join(labels))}: {html.escape(note)}</div>"
            for note, labels in fields.items()
        )
        + "</div>"
    )


def group_html(group: dict[str, Any], group_by: str = "none") -> str:
    """One group's block: headline, drift warning, the table of all-records estimates beside
    the reviewed-only figures, and the planning columns."""
    reviewed = group.get("reviewed", group.get("items", 0)) or 0
    population = group.get("population")
    # The headline says the overall note; rows with that same note point to it.
    overall = group["overall"]
    shared_note = overall.get("estimateNote") if overall.get("estimate") is None else None
    body = []
    for label, entry, threshold, wrong, two in _rows(group):
        if (
            entry.get("estimate") is None
            and shared_note
            and entry.get("estimateNote") == shared_note
        ):
            all_text = "not known yet (see above)"
        else:
            all_text = estimate_text(entry)
        body.append(
            f"<tr><td {_LABEL_CELL}><b>{html.escape(label)}</b></td>"
            f"<td {_ALL_CELL}>{html.escape(all_text)}</td>"
            f"<td {_CELL}>{html.escape(reviewed_text(entry, reviewed))}</td>"
            f"<td {_CELL}>{html.escape(threshold)}</td>"
            f"<td {_CELL}>{html.escape(wrong)}</td>"
            f"<td {_CELL}>{html.escape(two)}</td></tr>"
        )
    title = html.escape(group_name(group, group_by))
    headline = _headline(group)
    return (
        f'<div class="sb-dash-group" style="margin:10px 0 16px 0">'
        f'<div style="font-size:1.15em"><b>{title}</b> — {_count(population)} finished '
        f"record(s), {reviewed:,} reviewed: {html.escape(reviewed_order(group))}</div>"
        + drift_warning(group)
        + (f'<div style="margin:4px 0;max-width:1150px">{headline}</div>' if headline else "")
        + '<table style="border-collapse:collapse;max-width:1200px" class="sb-estimates">'
        f"<tr><th {_HEAD}>What is read</th>"
        f"<th {_ALL_HEAD}>All {_count(population)} records: share right (95% range)</th>"
        f"<th {_HEAD}>Reviewed records only: share right</th>"
        f"<th {_HEAD}>Sure enough to skip review</th>"
        f"<th {_HEAD}>Wrong ones left among the unreviewed</th>"
        f"<th {_HEAD}>More audit reviews for ±2 points</th></tr>"
        + "".join(body)
        + "</table>"
        + threshold_notes(group)
        + "</div>"
    )


GLOSSARY = (
    "<small><b>All records</b>: estimated for every finished record from the records reviewed "
    "in the <i>Audit sample</i> order (a random order, so they are a fair sample); the 95% "
    "range holds the true figure 19 times out of 20. <b>Reviewed records only</b>: just the "
    "records someone checked; when they were picked least confident first they are the "
    "hardest ones, so this figure is usually lower than the truth for all. <b>Sure enough to "
    "skip review</b>: the reader's confidence (the number beside each field in the Review tab) "
    "at or above which it was right at least 99% of the time in the audit sample. "
    "<b>±2 points</b>: the 95% range no wider than 2 percentage points either side. "
    "<b>ECE</b> (expected calibration error): the average gap between how sure the reader was "
    "and how often it was right (0 is perfect). <b>Match precision</b>: of the albums matched, "
    "how many were right; <b>recall</b>: of the records in the catalog, how many were matched "
    "to the right album.</small>"
)


def reviewed_only_html(body: dict[str, Any]) -> str:
    """The figures of the reviewed records alone (as before the estimates): calibration error,
    match precision and recall, the fields most often wrong."""
    rows = []
    for g in body["groups"]:
        worst = ", ".join(
            f"{FIELD_LABELS.get(name, name)} ({wrong} of {judged})"
            for name, wrong, judged in wrong_fields(g)[:3]
            if wrong
        )
        m = g["match"]
        rows.append(
            "<tr>"
            f"<td {_CELL}>{html.escape(group_name(g, body['groupBy']))}</td>"
            f"<td {_CELL}>{g['items']}</td>"
            f"<td {_CELL}>{_num(g['ece'])}</td>"
            f"<td {_CELL}>{_pct(m['precision'])}</td><td {_CELL}>{_pct(m['recall'])}</td>"
            f"<td {_CELL}>{html.escape(worst) or 'none'}</td></tr>"
        )
    return (
        f"<div style='margin-top:8px'><b>{body['reviewedItems']} reviewed record(s)</b> — "
        "more figures from the reviewed records only:"
        '<table style="border-collapse:collapse">'
        f"<tr><th {_HEAD}>group</th><th {_HEAD}>reviewed records</th><th {_HEAD}>ECE</th>"
        f"<th {_HEAD}>match precision</th><th {_HEAD}>match recall</th>"
        f"<th {_HEAD}>most often wrong</th></tr>" + "".join(rows) + "</table></div>"
    )


def summary_html(body: dict[str, Any]) -> str:
    n = body["reviewedItems"]
    if not n and not body.get("population"):
        return (
            "<b>No reviewed records yet.</b> Review some records in the Review tab (pick "
            "<i>Audit sample</i> as the order to learn about all your records); the figures "
            "here are computed from your corrections."
        )
    lead = ""
    if not n:
        lead = (
            "<b>No reviewed records yet.</b> Pick <i>Audit sample</i> as the order in the "
            "Review tab and review some records: the figures below come from them.<br>"
        )
    return (
        '<div class="sb-dash-summary">'
        + lead
        + "".join(group_html(g, body["groupBy"]) for g in body["groups"])
        + (reviewed_only_html(body) if n else "")
        + GLOSSARY
        + "</div>"
    )


def _bars(ax: Any, groups: list[dict[str, Any]], group_by: str) -> None:
    """Per field: the all-records estimate as a bar with its 95% range, the reviewed-only
    figure as a red diamond on it."""
    names = [*FIELD_LABELS, "overall", "match"]
    labels = [*FIELD_LABELS.values(), "all six fields", "catalog match"]
    width = 0.8 / max(len(groups), 1)
    for k, g in enumerate(groups):
        xs = [i + (k - (len(groups) - 1) / 2) * width for i in range(len(names))]
        entries = [g["fields"][n] if n in g["fields"] else g[n] for n in names]
        ests = [e.get("estimate") for e in entries]
        heights = [e["accuracy"] if e else 0.0 for e in ests]
        low = [e["accuracy"] - e["low"] if e else 0.0 for e in ests]
        high = [e["high"] - e["accuracy"] if e else 0.0 for e in ests]
        many = len(groups) > 1
        drawn = ax.bar(
            xs,
            heights,
            width=width * 0.9,
            yerr=[low, high],
            capsize=3,
            color=None if many else _ALL_COLOUR,
            alpha=0.75,
            label=f"{group_name(g, group_by)}: all records" if many else "all records (95% range)",
        )
        for rect, est in zip(drawn, ests, strict=True):
            if est is None:
                ax.annotate(
                    "not\nknown\nyet",
                    (rect.get_x() + rect.get_width() / 2, 0.02),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="#555",
                )
        reviewed = [(x, e.get("reviewedAccuracy")) for x, e in zip(xs, entries, strict=True)]
        reviewed = [(x, v) for x, v in reviewed if v is not None]
        if reviewed:
            ax.plot(
                [x for x, _ in reviewed],
                [v for _, v in reviewed],
                linestyle="none",
                marker="D",
                color=_REVIEWED_COLOUR,
                markersize=6,
                label="reviewed records only" if k == 0 else None,
            )
    ax.set_xticks(range(len(names)), labels, rotation=15)
    ax.set_ylim(0, 1.22)  # room above the bars for the legend
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.yaxis.set_major_formatter(_percent_formatter())
    ax.set_ylabel("share right")
    ax.set_title("Accuracy per field: all records (bars, 95% range) and reviewed records only")
    ax.legend(fontsize=8, loc="upper left", ncol=4)


def _percent_formatter() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0, decimals=0)


def _reliability(ax: Any, groups: list[dict[str, Any]], group_by: str) -> None:
    drawn_any = False
    for g in groups:
        points = [b for b in g.get("auditCalibration") or [] if b["n"]]
        if not points:
            continue
        drawn_any = True
        ax.errorbar(
            [b["meanConfidence"] for b in points],
            [b["accuracy"] for b in points],
            yerr=[
                [b["accuracy"] - b["low"] for b in points],
                [b["high"] - b["accuracy"] for b in points],
            ],
            marker="o",
            capsize=3,
            label=group_name(g, group_by),
        )
        for b in points:
            ax.annotate(
                f"{b['n']}",
                (b["meanConfidence"], b["accuracy"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    if not drawn_any:
        ax.text(0.5, 0.5, "no audit reviews yet", ha="center", va="center", color="#555")
    # A good reader's confidences sit above 0.7: from 0 the points crowd the right edge.
    given = [b["confidenceFrom"] for g in groups for b in g.get("auditCalibration") or [] if b["n"]]
    ax.set_xlim(max(0.0, min(given, default=0.0) - 0.05), 1.02)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(_percent_formatter())
    ax.set_xlabel("confidence the reader gave")
    ax.set_ylabel("share right")
    ax.set_title("Reliability, from the audit sample\n(bars: 95% range; numbers: fields)")
    ax.legend(fontsize=8, loc="upper left")


def _weekly(ax: Any, groups: list[dict[str, Any]], group_by: str) -> None:
    weeks = sorted({w["week"] for g in groups for w in g.get("weekly") or []})
    drawn_any = False
    for g in groups:
        points = [
            (weeks.index(w["week"]), w["overall"])
            for w in g.get("weekly") or []
            if w.get("overall") is not None
        ]
        if not points:
            continue
        drawn_any = True
        xs = [x for x, _ in points]
        accuracy = [e["accuracy"] for _, e in points]
        low, high = [e["low"] for _, e in points], [e["high"] for _, e in points]
        # Bars as well as the band: a band needs two weeks to show, and the first week is
        # where every station starts.
        line = ax.errorbar(
            xs,
            accuracy,
            yerr=[
                [a - lo for a, lo in zip(accuracy, low, strict=True)],
                [hi - a for a, hi in zip(accuracy, high, strict=True)],
            ],
            marker="o",
            capsize=3,
            label=group_name(g, group_by),
        )
        ax.fill_between(xs, low, high, color=line[0].get_color(), alpha=0.2)
        if (g.get("drift") or {}).get("overall"):
            x, e = points[-1]
            ax.plot([x], [e["accuracy"]], marker="o", markersize=11, color=_REVIEWED_COLOUR)
            ax.annotate(
                "worse",
                (x, e["low"]),
                textcoords="offset points",
                xytext=(0, -14),
                ha="center",
                color=_REVIEWED_COLOUR,
                fontsize=8,
            )
    if weeks:
        ax.set_xticks(range(len(weeks)), weeks, rotation=20, fontsize=8)
    if not drawn_any:
        ax.text(
            0.5,
            0.5,
            "not enough audit reviews in any week yet",
            ha="center",
            va="center",
            color="#555",
            transform=ax.transAxes,
        )
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(_percent_formatter())
    ax.set_xlabel("week starting")
    ax.set_ylabel("share of fields right, all records")
    ax.set_title("Week by week, all records (95% range)")
    if drawn_any:
        ax.legend(fontsize=8, loc="lower left")


def figure_png(body: dict[str, Any]) -> bytes:
    """Accuracy per field (all records beside reviewed only), the reliability diagram from the
    audit sample, and accuracy week by week; one series per group."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe from threads

    fig = Figure(figsize=FIGURE_INCHES, dpi=90)
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.05])
    groups = body["groups"]
    group_by = body["groupBy"]
    _bars(fig.add_subplot(grid[0, :]), groups, group_by)
    _reliability(fig.add_subplot(grid[1, 0]), groups, group_by)
    _weekly(fig.add_subplot(grid[1, 1]), groups, group_by)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


class DashboardPanel(widgets.VBox):
    def __init__(self) -> None:
        self.client: Client | None = None
        self.body: dict[str, Any] | None = None
        self.group_by = widgets.Dropdown(options=GROUPINGS, value="none", description="Figures")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.add_class("sb-dash-refresh")
        self.summary = widgets.HTML()
        self.summary.add_class("sb-dashboard")
        self.plot = widgets.Output()
        self.plot.add_class("sb-plot")
        self.message = message_box()
        self.group_by.observe(lambda _c: self.refresh(), "value")
        self.refresh_button.on_click(lambda _b: self.refresh())
        super().__init__(
            [
                widgets.HBox([self.group_by, self.refresh_button]),
                self.message,
                self.summary,
                self.plot,
            ]
        )

    @guarded("message")
    def refresh(self) -> None:
        if self.client is None:
            return
        from IPython.display import Image

        body = self.client.metrics(self.group_by.value)
        self.body = body
        show(self.message, "")
        self.summary.value = summary_html(body)
        self.plot.outputs = ()
        if body["reviewedItems"]:
            self.plot.append_display_data(Image(data=figure_png(body), format="png"))
