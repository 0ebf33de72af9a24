"""Is a difference more than noise? Paired tests on the items two variants both saw.

- `paired_bootstrap`: resample items with replacement, recompute the accuracy difference each
  time; the 2.5th and 97.5th percentiles are the 95 % interval. Items, not (item, field) pairs,
  are resampled, because one item's fields succeed or fail together (a blurry photo).
- `mcnemar`: exact two-sided test on the discordant pairs of one binary outcome."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 4000


@dataclass(frozen=True)
class Interval:
    difference: float  # candidate minus baseline, on the paired items
    low: float
    high: float
    n: int  # items both variants saw

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(
    baseline_correct: Sequence[float],
    candidate_correct: Sequence[float],
    counts: Sequence[float] | None = None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval | None:
    """The difference of accuracies (candidate - baseline) with a percentile bootstrap
    interval. Per item: how many fields each got right and (`counts`) how many were scored;
    without `counts` each item scores one 0/1 outcome. None when there is nothing to compare.
    A fixed seed: the same data always prints the same interval."""
    a = np.asarray(baseline_correct, dtype=float)
    b = np.asarray(candidate_correct, dtype=float)
    n = np.ones_like(a) if counts is None else np.asarray(counts, dtype=float)
    if a.shape != b.shape or a.shape != n.shape:
        raise ValueError("paired_bootstrap needs one baseline, candidate and count per item")
    if a.size == 0 or n.sum() == 0:
        return None
    observed = float((b.sum() - a.sum()) / n.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(resamples, a.size))
    totals = n[idx].sum(axis=1)
    keep = totals > 0  # a resample of only unscored items says nothing
    diffs = (b[idx].sum(axis=1) - a[idx].sum(axis=1))[keep] / totals[keep]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return Interval(observed, float(low), float(high), int(a.size))


@dataclass(frozen=True)
class McNemar:
    only_baseline: int  # right in the baseline, wrong in the candidate (regressions)
    only_candidate: int  # wrong in the baseline, right in the candidate (fixes)
    p_value: float


def mcnemar(baseline: Sequence[bool], candidate: Sequence[bool]) -> McNemar:
    """Exact McNemar test: under "no difference", each discordant pair is a fair coin."""
    if len(baseline) != len(candidate):
        raise ValueError("mcnemar needs paired outcomes")
    b = sum(1 for x, y in zip(baseline, candidate, strict=True) if x and not y)
    c = sum(1 for x, y in zip(baseline, candidate, strict=True) if y and not x)
    n = b + c
    if n == 0:
        return McNemar(b, c, 1.0)
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return McNemar(b, c, min(1.0, 2 * tail))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100, linear interpolation), None for no values."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return float(np.percentile(np.asarray(vals, dtype=float), q))
