"""HTML for the notebook: the regressions and disagreements with the record's photos as
thumbnails, the truth, and each variant's value marked right or wrong; and the pairwise
intervals as a plain-language table a music director can read."""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from typing import Any

from scanbatch.experiments.compare import OVERALL, Comparison, verdict
from scanbatch.names import FIELDS
from scanbatch.thumbnails import inline_img, jpeg_thumbnail

THUMBNAIL_PX = 120


@lru_cache(maxsize=512)
def thumbnail(path: str, px: int = THUMBNAIL_PX) -> str:
    """An <img> with the photo as an inline JPEG, or a note when it cannot be read."""
    try:
        jpeg = jpeg_thumbnail(Path(path).read_bytes(), px, quality=70)
    except Exception as exc:  # a moved or unreadable photo: the table still shows the values
        name = html.escape(Path(path).name)
        return f"<small>photo unavailable: {name} ({type(exc).__name__})</small>"
    return inline_img(jpeg, Path(path).name)


def _photos(c: Comparison, idx: int) -> str:
    folder = Path(c.run.meta["dataset"]["path"])
    names = c.truth[idx].get("photos") or []
    return " ".join(thumbnail(str(folder / n)) for n in names)


def _cell(value: str | None, correct: bool | None) -> str:
    mark = "" if correct is None else (" ✓" if correct else " ✗")
    color = "" if correct is None else ("#e6f4ea" if correct else "#fce8e6")
    shown = "<i>nothing read</i>" if value is None else html.escape(value)
    return f'<td style="background:{color}">{shown}{mark}</td>'


def items_html(c: Comparison, rows: list[dict[str, Any]], limit: int = 30) -> str:
    """Rows of {itemIndex, field, truth, values: {variant: value}, correct: {variant: bool}}."""
    if not rows:
        return "<p><i>none</i></p>"
    variants = list(rows[0]["values"])
    head = "".join(f"<th>{html.escape(v)}</th>" for v in variants)
    body = []
    for r in rows[:limit]:
        truth = r["truth"]
        cells = "".join(_cell(r["values"][v], r["correct"][v]) for v in variants)
        body.append(
            f"<tr><td>{r['itemIndex']}</td><td>{_photos(c, r['itemIndex'])}</td>"
            f"<td>{html.escape(r['field'])}</td>"
            f"<td><b>{html.escape(truth) if truth else '<i>not on the photos</i>'}</b></td>"
            f"{cells}</tr>"
        )
    more = f"<p>… and {len(rows) - limit} more</p>" if len(rows) > limit else ""
    return (
        "<table><tr><th>item</th><th>photos</th><th>field</th><th>truth</th>"
        f"{head}</tr>{''.join(body)}</table>{more}"
    )


def regressions_rows(c: Comparison) -> list[dict[str, Any]]:
    """Regressions of every pair as disagreement-style rows (the two variants' values)."""
    rows = []
    for pair in c.pairs:
        for reg in pair.regressions:
            values = {pair.baseline: reg[pair.baseline], pair.candidate: reg[pair.candidate]}
            rows.append(
                {
                    "pair": f"{pair.candidate} vs {pair.baseline}",
                    "itemIndex": reg["itemIndex"],
                    "field": reg["field"],
                    "truth": reg["truth"],
                    "values": values,
                    "correct": {pair.baseline: True, pair.candidate: False},
                }
            )
    return rows


def regressions_html(c: Comparison, limit: int = 30) -> str:
    parts = []
    for pair in c.pairs:
        rows = [
            r for r in regressions_rows(c) if r["pair"] == f"{pair.candidate} vs {pair.baseline}"
        ]
        parts.append(
            f"<h4>{html.escape(pair.candidate)} vs {html.escape(pair.baseline)}: "
            f"{len(pair.regressions)} regressions, {len(pair.fixes)} fixes</h4>"
            + items_html(c, rows, limit)
        )
    return "".join(parts) or "<p><i>only one variant ran: nothing to compare</i></p>"


def pairs_table(c: Comparison) -> Any:
    """One row per pair and field: the difference, its interval and what it means."""
    import pandas as pd

    rows = []
    for pair in c.pairs:
        for key in (*FIELDS, OVERALL):
            iv = pair.intervals[key]
            test = pair.tests.get(key)
            rows.append(
                {
                    "candidate vs baseline": f"{pair.candidate} vs {pair.baseline}",
                    "field": key,
                    "items": pair.n,
                    "difference": None if iv is None else round(iv.difference, 3),
                    "95% interval": None if iv is None else f"[{iv.low:+.3f}, {iv.high:+.3f}]",
                    "exact test p": "-" if test is None else f"{test.p_value:.3f}",
                    "verdict": verdict(pair, key),
                }
            )
    return pd.DataFrame(rows)
