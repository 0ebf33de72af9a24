"""Audit estimates: how good the reader is on every finished record, not only on the reviewed.

Reviews picked least-confident-first describe the hardest records. What makes an estimate for
all of them possible is the audit order: every finished record gets a uniform random key when it
finishes (`scan_results.audit_key`), and `sort=audit` lists the unreviewed by that key. Whatever
other orders reviewers also used, three things then hold for one scope (a group, a week):

- the **key frontier** `t`, the smallest key of an unreviewed record: every record whose key is
  below it has been reviewed (by the audit order, or by chance through another order);
- the **known region**: records less confident than the least confident unreviewed one, or newer
  than the newest unreviewed one, are all reviewed too. The two systematic orders
  (`sort=confidence`, `sort=newest`) fill exactly these, so their truth counts as it is;
- every unreviewed record lies in the rest, `H`. Keys do not depend on confidence, time or
  truth, so the records of `H` with a key below `t` (the audit sample `S`, size n) are a simple
  random sample of `H`, and the other m records of `H` are the rest of it.

The estimate of accuracy over the N records of the scope (y: 1 when right, 0 when wrong; for
"all fields", the share of the six that are right) is

    accuracy = (sum of y over the known region and S  +  m * mean of y over S) / N

and its 95 % interval replaces the mean over S by the ends of a Wilson score interval for the
mean of the m unsampled records: the sample and the rest are a random split of H, so the
difference of their means has variance s² (1/n + 1/m), a Wilson interval with n·m/(n+m)
observations. Wilson, not the normal approximation: accuracies near 1 with a few dozen reviews
are the usual case, and there the normal interval is too short. For "all fields" y is not 0/1
and its variance s² is below p(1-p): the observations are scaled by p(1-p)/s² (a design
effect), so the interval is as wide as the sample's spread says. Reviews that are
neither in the known region nor in S (a job reviewed item by item, say) are not used for the
estimate: nothing says they resemble the unreviewed.

With fewer than MIN_AUDIT_REVIEWS records in S the estimate is None, with a note saying how many
more audit reviews are needed. `tests/test_estimates.py` simulates audits with a miscalibrated
reader and four mixes of orders and checks the coverage of the interval and the bias.

Planning figures come from a calibration fitted on the audit sample of the whole scope (records
with a key below `t`: a random sample of all of them): per field, binned by the confidence the
reader gave it, each bin's accuracy with its Wilson interval. They give the expected number of
wrong fields left among the unreviewed, and per field the lowest confidence of a fixed grid
above which the audit sample shows the reader right at least 99 % of the time, with 95 %
confidence (a one-sided Clopper-Pearson bound, Bonferroni-corrected over the grid, so choosing
among the grid's thresholds does not make the claim optimistic).

Pure: `Records` holds one scope's arrays (the store reads them), everything else is computed
here, once, for the route, the dashboard and `scanbatch audit` alike."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

import numpy as np

from scanbatch.names import FIELDS

CONFIDENCE_LEVEL = 0.95
Z = NormalDist().inv_cdf(0.5 + CONFIDENCE_LEVEL / 2)
MIN_AUDIT_REVIEWS = 30
TARGET_HALF_WIDTH = 0.02  # "within ±2 points"
THRESHOLD_ACCURACY = 0.99
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
# Finer at the top, where a good reader's confidences are.
CALIBRATION_EDGES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)
MATCH = "match"
OVERALL = "overall"
MEASURES = (*FIELDS, MATCH, OVERALL)
AUDIT_SAMPLE = "audit-sample"
ALL_REVIEWED = "all-reviewed"
WEEK = timedelta(days=7)
_EPOCH_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)  # weeks start on Monday, as ISO weeks do


@dataclass(frozen=True)
class Records:
    """One scope's finished records as aligned arrays (one entry per record).

    `right[m]` is 1.0 or 0.0 for a reviewed record (for OVERALL the share of fields right) and
    NaN for the others; confidences are NaN where the reader gave none (nothing read at all)."""

    key: np.ndarray  # the audit key, uniform in [0, 1)
    confidence: np.ndarray  # the record's lowest field confidence (the queue's order)
    created: np.ndarray  # seconds since the epoch (the queue's "newest")
    reviewed: np.ndarray  # bool
    right: Mapping[str, np.ndarray]  # per measure
    field_confidence: Mapping[str, np.ndarray]  # per field

    def __len__(self) -> int:
        return len(self.key)

    def subset(self, mask: np.ndarray) -> Records:
        return Records(
            key=self.key[mask],
            confidence=self.confidence[mask],
            created=self.created[mask],
            reviewed=self.reviewed[mask],
            right={k: v[mask] for k, v in self.right.items()},
            field_confidence={k: v[mask] for k, v in self.field_confidence.items()},
        )

    @classmethod
    def build(
        cls,
        *,
        key: Iterable[float],
        confidence: Iterable[float | None],
        created: Iterable[float],
        reviewed: Iterable[bool],
        right: Mapping[str, Iterable[float | None]],
        field_confidence: Mapping[str, Iterable[float | None]],
    ) -> Records:
        """From plain sequences (None for a missing value); OVERALL is derived from the fields
        when `right` lacks it."""

        def floats(values: Iterable[float | None]) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=float)

        rights = {k: floats(v) for k, v in right.items()}
        if OVERALL not in rights:
            rights[OVERALL] = all_fields(rights)
        return cls(
            key=floats(key),
            confidence=floats(confidence),
            created=floats(created),
            reviewed=np.array(list(reviewed), dtype=bool),
            right=rights,
            field_confidence={k: floats(v) for k, v in field_confidence.items()},
        )


def all_fields(right: Mapping[str, np.ndarray]) -> np.ndarray:
    """OVERALL per record: the share of the six fields right (NaN where not reviewed)."""
    return np.mean([right[f] for f in FIELDS], axis=0)


def wilson(p: float, n: float, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion p observed on n (possibly fractional) draws."""
    if n <= 0:
        return 0.0, 1.0
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    # It always holds p; at p = 0 or 1 rounding could put an end a hair past it.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


@dataclass(frozen=True)
class Design:
    """Which records of a scope are known exactly and which are the audit sample (above)."""

    population: int
    reviewed: int
    known: np.ndarray  # bool: the known region (all reviewed)
    sample: np.ndarray  # bool: S, the audit sample of H
    rest: int  # m: the records of H outside S
    all_reviewed: bool


def design(records: Records) -> Design:
    n = len(records)
    unreviewed = ~records.reviewed
    if not unreviewed.any():
        everything = np.ones(n, dtype=bool)
        return Design(n, n, everything, np.zeros(n, dtype=bool), 0, True)
    confidence = np.where(np.isnan(records.confidence), -np.inf, records.confidence)
    least_confident = confidence[unreviewed].min()
    newest = records.created[unreviewed].max()
    frontier = records.key[unreviewed].min()
    known = (confidence < least_confident) | (records.created > newest)
    sample = ~known & (records.key < frontier)
    rest = int((~known).sum() - sample.sum())
    return Design(n, int(records.reviewed.sum()), known, sample, rest, False)


def audit_sample(records: Records) -> np.ndarray:
    """The records with a key below the frontier: a random sample of the whole scope, all
    reviewed. What the planning figures are fitted on."""
    unreviewed = ~records.reviewed
    frontier = records.key[unreviewed].min() if unreviewed.any() else np.inf
    return records.key < frontier


def _estimate_from(y: np.ndarray, d: Design) -> tuple[dict[str, Any] | None, str | None]:
    if d.population == 0:
        return None, "No finished records in this scope."
    if d.all_reviewed:
        accuracy = float(y.mean())
        return {
            "accuracy": accuracy,
            "low": accuracy,
            "high": accuracy,
            "method": ALL_REVIEWED,
            "auditReviews": d.population,
            "reviewsForTwoPoints": 0,
        }, None
    n = int(d.sample.sum())
    if n < MIN_AUDIT_REVIEWS:
        # With fewer unreviewed records than that, reviewing them all makes the figure exact.
        more = min(MIN_AUDIT_REVIEWS - n, d.population - d.reviewed)
        return None, (
            f"Review at least {more} more record(s) from the Audit sample for an estimate over "
            f"all {d.population:,} records (the audit sample has {n})."
        )
    m = d.rest
    exact = float(y[d.known].sum() + y[d.sample].sum())
    p = float(y[d.sample].mean())
    low, high = wilson(p, _observations(y[d.sample], n * m / (n + m)))
    total = d.population
    accuracy = (exact + m * p) / total
    return {
        "accuracy": accuracy,
        # Sums of floats in another order: kept from straying an ulp past the estimate.
        "low": min(accuracy, (exact + m * low) / total),
        "high": max(accuracy, (exact + m * high) / total),
        "method": AUDIT_SAMPLE,
        "auditReviews": n,
        "reviewsForTwoPoints": reviews_for_half_width(p, n, m, total),
    }, None


def _observations(sample: np.ndarray, n: float) -> float:
    """Wilson's n for a sample mean. A 0/1 measure has variance p(1-p); "all fields" (a share
    of six) has less, and taking p(1-p) for it gave intervals covering 100 % of simulated
    audits at twice the width needed: n is scaled by p(1-p) / s², never below n."""
    p = float(sample.mean())
    variance = float(sample.var(ddof=1)) if len(sample) > 1 else 0.0
    if p in (0.0, 1.0) or variance <= 0 or np.isin(sample, (0.0, 1.0)).all():
        return n
    return n * max(1.0, p * (1 - p) / variance)


def estimate(records: Records, measure: str) -> tuple[dict[str, Any] | None, str | None]:
    """(estimate, note) of one measure's accuracy over every record of the scope."""
    return _estimate_from(records.right[measure], design(records))


def reviews_for_half_width(
    p: float, n: int, m: int, population: int, target: float = TARGET_HALF_WIDTH
) -> int:
    """How many more audit reviews bring the interval's half width to `target` or less,
    if the sample's accuracy stays p."""

    def half(extra: int) -> float:
        rest = m - extra
        if rest <= 0:
            return 0.0
        sampled = n + extra
        low, high = wilson(p, sampled * rest / (sampled + rest))
        return rest / population * (high - low) / 2

    if half(0) <= target:
        return 0
    lo, hi = 0, m  # half(m) == 0: reviewing everything leaves nothing to estimate
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if half(mid) > target else (lo, mid)
    return hi


# --- planning: calibration on the audit sample ---------------------------------------------


def _bin_of(confidence: np.ndarray) -> np.ndarray:
    """Calibration bin per confidence; -1 for none given."""
    edges = np.array(CALIBRATION_EDGES[:-1])
    bins = np.searchsorted(edges, confidence, side="right")
    return np.where(np.isnan(confidence), -1, bins)


def calibration(records: Records, sample: np.ndarray, names: Iterable[str]) -> list[dict]:
    """Audit-sample reliability, pooled over `names`: per confidence bin, how often right."""
    lows = (0.0, *CALIBRATION_EDGES[:-1])
    counts = np.zeros(len(CALIBRATION_EDGES))
    correct = np.zeros(len(CALIBRATION_EDGES))
    confidence_sum = np.zeros(len(CALIBRATION_EDGES))
    for name in names:
        conf = records.field_confidence[name][sample]
        right = records.right[name][sample]
        bins = _bin_of(conf)
        given = bins >= 0
        np.add.at(counts, bins[given], 1)
        np.add.at(correct, bins[given], right[given])
        np.add.at(confidence_sum, bins[given], conf[given])
    out = []
    for b, (lo, hi) in enumerate(zip(lows, CALIBRATION_EDGES, strict=True)):
        n = int(counts[b])
        accuracy = correct[b] / n if n else None
        low, high = wilson(accuracy, n) if n else (None, None)
        out.append(
            {
                "confidenceFrom": lo,
                "confidenceTo": hi,
                "n": n,
                "correct": int(correct[b]),
                "accuracy": accuracy,
                "low": low,
                "high": high,
                "meanConfidence": confidence_sum[b] / n if n else None,
            }
        )
    return out


def wrong_left(records: Records, sample: np.ndarray, name: str) -> dict[str, float] | None:
    """Expected wrong values of field `name` among the unreviewed, from the audit sample's
    accuracy per confidence bin (a bin the sample has not seen takes the sample's overall
    accuracy), with a 95 % range: the bins are disjoint parts of the sample, so their
    variances add up, each the uncertainty of the bin's rate (from its Wilson interval) and
    the spread of the unreviewed records around it."""
    if sample.sum() < MIN_AUDIT_REVIEWS:
        return None
    bins = _bin_of(records.field_confidence[name]) + 1  # 0: no confidence given
    size = len(CALIBRATION_EDGES) + 1
    right = records.right[name][sample]
    seen = np.bincount(bins[sample], minlength=size)
    seen_right = np.bincount(bins[sample], weights=right, minlength=size)
    left = np.bincount(bins[~records.reviewed], minlength=size)
    overall = float(right.mean())
    expected = variance = 0.0
    for b in np.flatnonzero(left):
        count = int(left[b])
        p, n = (seen_right[b] / seen[b], int(seen[b])) if seen[b] else (overall, len(right))
        lo, hi = wilson(float(p), n)
        expected += count * (1 - p)
        # The bin's rate is uncertain, and so is each unreviewed record around it: that
        # spread is taken at the rate in the bin's interval that makes it widest (a bin seen
        # right every time has p = 1, and would otherwise claim no spread at all).
        spread = min(max(0.5, lo), hi)
        variance += (count * (hi - lo) / (2 * Z)) ** 2 + count * spread * (1 - spread)
    half = Z * math.sqrt(variance)
    unreviewed = int(left.sum())
    return {
        "expected": float(expected),
        "low": max(0.0, expected - half),
        "high": min(unreviewed, expected + half),
    }


def total_wrong_left(lefts: list[dict[str, float] | None]) -> dict[str, float] | None:
    """The fields' expected wrong values added up. The fields' errors go together (a hard
    record is hard for all of them), so their ranges are added, not their variances."""
    if not lefts or any(x is None for x in lefts):
        return None
    expected = sum(x["expected"] for x in lefts)
    return {
        "expected": expected,
        "low": expected - sum(x["expected"] - x["low"] for x in lefts),
        "high": expected + sum(x["high"] - x["expected"] for x in lefts),
    }


def _lower_bound(correct: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson lower bound of a proportion at level alpha."""
    # scipy on first use: importing it costs ~0.7 s, and every process that opens the store
    # (each job's kernel, each CLI command) imports this module.
    from scipy import stats

    return 0.0 if correct == 0 else float(stats.beta.ppf(alpha, correct, n - correct + 1))


def reviews_for_threshold() -> int:
    """Audit reviews, all right, above one confidence that it takes to show 99 %."""
    alpha = (1 - CONFIDENCE_LEVEL) / len(THRESHOLD_GRID)
    return math.ceil(math.log(alpha) / math.log(THRESHOLD_ACCURACY))


def threshold(records: Records, sample: np.ndarray, name: str) -> dict[str, Any]:
    """The lowest grid confidence above which the audit sample shows field `name` right at
    least 99 % of the time (95 % one-sided, Bonferroni over the grid), and how many unreviewed
    records clear it."""
    alpha = (1 - CONFIDENCE_LEVEL) / len(THRESHOLD_GRID)
    conf = records.field_confidence[name][sample]
    right = records.right[name][sample]
    for c in THRESHOLD_GRID:
        above = conf >= c
        n = int(above.sum())
        if n and _lower_bound(int(right[above].sum()), n, alpha) >= THRESHOLD_ACCURACY:
            left = records.field_confidence[name][~records.reviewed]
            return {"confidence": c, "noReviewNeeded": int((left >= c).sum()), "note": None}
    return {
        "confidence": None,
        "noReviewNeeded": 0,
        "note": (
            "No such threshold yet: to show that the reader is right 99% of the time above "
            f"some confidence takes about {reviews_for_threshold()} audit reviews above it "
            f"without a mistake (the audit sample has {len(conf)} so far)."
        ),
    }


def needs_review(records: Records, thresholds: Mapping[str, float | None]) -> np.ndarray:
    """Unreviewed records that some field's threshold does not clear (a field with no
    threshold, or no confidence, always needs a person)."""
    clear = np.ones(len(records), dtype=bool)
    for name in FIELDS:
        c = thresholds.get(name)
        if c is None:
            clear[:] = False
            break
        with np.errstate(invalid="ignore"):
            clear &= records.field_confidence[name] >= c
    return ~records.reviewed & ~clear


# --- over time --------------------------------------------------------------------------------


def week_start(seconds: np.ndarray) -> np.ndarray:
    """The Monday (UTC) each time falls in, as seconds since the epoch."""
    origin = _EPOCH_MONDAY.timestamp()
    week = WEEK.total_seconds()
    return origin + np.floor((seconds - origin) / week) * week


def _week_label(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).date().isoformat()


def measures(records: Records, d: Design | None = None) -> dict[str, dict[str, Any] | None]:
    d = design(records) if d is None else d
    return {name: _estimate_from(records.right[name], d)[0] for name in MEASURES}


def weekly(records: Records) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Estimates per week (oldest first) and the drift flags: a measure drifts when the
    latest week's interval lies wholly below the interval of all the earlier weeks together."""
    weeks = week_start(records.created)
    out = []
    for w in np.unique(weeks):
        part = records.subset(weeks == w)
        d = design(part)
        est = measures(part, d)
        out.append(
            {
                "week": _week_label(float(w)),
                "population": len(part),
                "reviewed": d.reviewed,
                "auditReviews": d.population if d.all_reviewed else int(d.sample.sum()),
                OVERALL: est[OVERALL],
                "fields": {name: est[name] for name in FIELDS},
                MATCH: est[MATCH],
            }
        )
    flags = {name: False for name in MEASURES}
    if len(out) > 1:
        latest = weeks == weeks.max()
        before = measures(records.subset(~latest))
        for name in MEASURES:
            last = (
                out[-1][OVERALL]
                if name == OVERALL
                else (out[-1][MATCH] if name == MATCH else out[-1]["fields"][name])
            )
            flags[name] = bool(last and before[name] and last["high"] < before[name]["low"])
    drift = {
        OVERALL: flags[OVERALL],
        "fields": {name: flags[name] for name in FIELDS},
        MATCH: flags[MATCH],
    }
    return out, drift


# --- one group's figures --------------------------------------------------------------------


def reviewed_accuracy(records: Records, measure: str) -> float | None:
    y = records.right[measure][records.reviewed]
    return float(y.mean()) if len(y) else None


def group_figures(records: Records) -> dict[str, Any]:
    """Everything the metrics route adds to one group: population, estimates per field, the
    match and all fields, the planning figures, the audit calibration, weeks and drift."""
    d = design(records)
    sample = audit_sample(records)
    per: dict[str, dict[str, Any]] = {}
    for name in MEASURES:
        est, note = _estimate_from(records.right[name], d)
        per[name] = {
            "reviewedAccuracy": reviewed_accuracy(records, name),
            "estimate": est,
            "estimateNote": note,
        }
    thresholds = {}
    for name in FIELDS:
        per[name]["wrongLeft"] = wrong_left(records, sample, name)
        per[name]["threshold"] = threshold(records, sample, name)
        thresholds[name] = per[name]["threshold"]["confidence"]
    lefts = [per[name]["wrongLeft"] for name in FIELDS]
    two_points = [
        per[name]["estimate"]["reviewsForTwoPoints"] for name in MEASURES if per[name]["estimate"]
    ]
    weeks, drift = weekly(records) if len(records) else ([], weekly_empty())
    return {
        "population": d.population,
        "reviewed": d.reviewed,
        "auditReviews": int(d.population if d.all_reviewed else d.sample.sum()),
        "measures": per,
        "planning": {
            "unreviewed": d.population - d.reviewed,
            "needsReview": int(needs_review(records, thresholds).sum()),
            "wrongFieldsLeft": total_wrong_left(lefts),
            "reviewsForTwoPoints": max(two_points) if two_points else None,
        },
        "auditCalibration": calibration(records, sample, FIELDS),
        "weekly": weeks,
        "drift": drift,
    }


def weekly_empty() -> dict[str, Any]:
    return {OVERALL: False, "fields": {name: False for name in FIELDS}, MATCH: False}
