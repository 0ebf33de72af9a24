"""Dashboard: how well the reader does on the records people reviewed — accuracy per field,
a reliability diagram (confidence against accuracy, with counts), ECE, match precision and
recall, and the fields most often wrong; overall, by prompt version, extractor or model."""

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


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


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


def summary_html(body: dict[str, Any]) -> str:
    n = body["reviewedItems"]
    if not n:
        return (
            "<b>No reviewed records yet.</b> Review some records in the Review tab; the "
            "figures here are computed from your corrections."
        )
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
            f"<td>{html.escape(str(g['group'] or 'all'))}</td><td>{g['items']}</td>"
            f"<td>{_pct(g['overall']['accuracy'])}</td><td>{_num(g['ece'])}</td>"
            f"<td>{_pct(m['precision'])}</td><td>{_pct(m['recall'])}</td>"
            f"<td>{html.escape(worst) or 'none'}</td></tr>"
        )
    return (
        f'<div class="sb-dash-summary"><b>{n} reviewed record(s)</b>'
        '<table style="border-collapse:collapse" cellpadding="4">'
        "<tr><th>group</th><th>records</th><th>fields right</th><th>ECE</th>"
        "<th>match precision</th><th>match recall</th><th>most often wrong</th></tr>"
        + "".join(rows)
        + "</table><small>ECE: expected calibration error, the average gap between how sure "
        "the reader was and how often it was right (0 is perfect). Match precision: of the "
        "albums matched, how many were right; recall: of the records in the catalog, how many "
        "were matched to the right album.</small></div>"
    )


def figure_png(body: dict[str, Any]) -> bytes:
    """Accuracy per field (bars) and the reliability diagram, one series per group."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe from threads

    fig = Figure(figsize=(11, 4.2), dpi=90)
    bars, rel = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    groups = body["groups"]
    names = list(FIELD_LABELS)
    width = 0.8 / max(len(groups), 1)
    for k, g in enumerate(groups):
        label = str(g["group"] or "all")
        xs = [i + (k - (len(groups) - 1) / 2) * width for i in range(len(names))]
        acc = [g["fields"][n]["accuracy"] or 0.0 for n in names]
        counts = [g["fields"][n]["n"] for n in names]
        drawn = bars.bar(xs, acc, width=width, label=label)
        for rect, count in zip(drawn, counts, strict=True):
            bars.annotate(
                f"n={count}",
                (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        points = [b for b in g["calibration"] if b["n"]]
        rel.plot(
            [b["meanConfidence"] for b in points],
            [b["accuracy"] for b in points],
            marker="o",
            label=f"{label} (ECE {_num(g['ece'])})",
        )
        for b in points:
            rel.annotate(
                f"{b['n']}",
                (b["meanConfidence"], b["accuracy"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    bars.set_xticks(range(len(names)), [FIELD_LABELS[n] for n in names], rotation=20)
    bars.set_ylim(0, 1.1)
    bars.set_ylabel("share read exactly right")
    bars.set_title("Accuracy per field")
    rel.plot(
        [0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated"
    )
    rel.set_xlim(0, 1.02)
    rel.set_ylim(0, 1.05)
    rel.set_xlabel("confidence the reader gave")
    rel.set_ylabel("share right")
    rel.set_title("Reliability (numbers: fields per bucket)")
    if groups:
        bars.legend(fontsize=8)
        rel.legend(fontsize=8, loc="upper left")
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
