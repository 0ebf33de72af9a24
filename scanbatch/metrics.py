"""The body of `GET /library/scan/review/metrics`: per group, the reviewed-only figures
(`scanbatch.evaluate`, the same code as `scanbatch eval`) beside the estimates over every
finished record (`scanbatch.estimates`). The route, the dashboard (through the client) and
`scanbatch audit` (through the client) all show this one computation."""

from __future__ import annotations

from typing import Any

from scanbatch.audit import GroupBy, Scope
from scanbatch.estimates import MATCH, OVERALL, audit_sample, group_figures, threshold
from scanbatch.evaluate import evaluate
from scanbatch.names import FIELD_LABELS, FIELDS
from scanbatch.store.reviews import ReviewStore


def review_metrics(
    reviews: ReviewStore, group_by: GroupBy = GroupBy.NONE, scope: Scope = Scope()
) -> dict[str, Any]:
    """One entry per group of finished records, most records first (`MetricsBody`). Kept
    until the store's next write: a dashboard refreshed, or `needsReview` paged, recomputes
    nothing (~150 ms at 100,000 records)."""
    return reviews.db.cached(
        ("metrics", group_by, scope), lambda: compute_metrics(reviews, group_by, scope)
    )


def compute_metrics(reviews: ReviewStore, group_by: GroupBy, scope: Scope) -> dict[str, Any]:
    """`review_metrics` computed anew."""
    populations = reviews.population(group_by=group_by, scope=scope)
    judged = reviews.judged(group_by=group_by, scope=scope)
    groups = []
    ordered = sorted(populations, key=lambda k: (-len(populations[k]), str(k)))
    for key in (k for k in ordered if len(populations[k])):
        body = evaluate(*judged.get(key, ([], [])), details=False).metrics()
        figures = group_figures(populations[key])
        added = figures.pop("measures")
        for name in FIELDS:
            body["fields"][name].update(added[name])
        body[MATCH].update(added[MATCH])
        body[OVERALL].update(added[OVERALL])
        groups.append({"group": key, **body, **figures})
    return {
        "groupBy": group_by.value,
        "reviewedItems": sum(len(truths) for truths, _ in judged.values()),
        "population": sum(len(r) for r in populations.values()),
        "groups": groups,
    }


def thresholds(reviews: ReviewStore) -> dict[str, float | None]:
    """Each field's 99 % confidence threshold over every finished record: what
    `state=needsReview` filters by. Kept until the store's next write, as the metrics are."""
    return reviews.db.cached("thresholds", lambda: compute_thresholds(reviews))


def compute_thresholds(reviews: ReviewStore) -> dict[str, float | None]:
    records = reviews.population()[None]
    sample = audit_sample(records)
    return {name: threshold(records, sample, name)["confidence"] for name in FIELDS}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def format_table(body: dict[str, Any]) -> str:
    """The metrics as text, for `scanbatch audit`: per group and field, the estimate over all
    records beside the reviewed-only figure, then what is left to review."""
    lines = []
    for g in body["groups"]:
        name = "all records" if g["group"] is None else f"{body['groupBy']} {g['group']}"
        lines += [
            f"{name}: {g['population']:,} finished, {g['reviewed']:,} reviewed, "
            f"{g['auditReviews']:,} in the audit sample",
            "",
            f"{'':<16}{'all records (95 % interval)':<32}{'reviewed only':<16}"
            f"{'+reviews for ±2 pts':>20}",
        ]
        rows = [(FIELD_LABELS[f], g["fields"][f]) for f in FIELDS]
        rows += [("catalog match", g[MATCH]), ("all fields", g[OVERALL])]
        notes = []
        for label, m in rows:
            est = m["estimate"]
            if est is None:
                shown, more = "no estimate yet (see below)", "-"
                notes.append(m["estimateNote"])
            else:
                shown = f"{_pct(est['accuracy'])} ({_pct(est['low'])}-{_pct(est['high'])})"
                more = str(est["reviewsForTwoPoints"])
            lines.append(f"{label:<16}{shown:<32}{_pct(m['reviewedAccuracy']):<16}{more:>20}")
        plan = g["planning"]
        left = plan["wrongFieldsLeft"]
        lines += [""]
        if left is not None:
            lines.append(
                f"wrong fields left among the {plan['unreviewed']:,} unreviewed: about "
                f"{left['expected']:.0f} ({left['low']:.0f}-{left['high']:.0f})"
            )
        lines.append(
            f"records that still need a person (state=needsReview): {plan['needsReview']:,}"
        )
        for f in FIELDS:
            t = g["fields"][f]["threshold"]
            if t["confidence"] is not None:
                lines.append(
                    f"  {FIELD_LABELS[f]}: right 99 % of the time at confidence "
                    f"{t['confidence']} or more ({t['noReviewNeeded']:,} records need no review)"
                )
        if all(g["fields"][f]["threshold"]["confidence"] is None for f in FIELDS):
            lines.append("  " + g["fields"][FIELDS[0]]["threshold"]["note"])
        drift = [FIELD_LABELS[f] for f in FIELDS if g["drift"]["fields"][f]] + (
            ["catalog match"] if g["drift"][MATCH] else []
        )
        if drift:
            lines.append(
                f"DRIFT: the latest week is worse than the weeks before for {', '.join(drift)}"
            )
        lines += [n for n in dict.fromkeys(notes) if n]
        lines.append("")
    if not body["groups"]:
        lines.append("No finished records in this scope.")
    return "\n".join(lines).rstrip() + "\n"
