"""The audit estimate is honest: simulated audits with known truth and a reader whose confidence
is miscalibrated on purpose, reviewed in four mixes of queue orders. The 95 % interval must cover
the true accuracy over all records in at least 90 % of audits, and the point estimate's mean
bias must stay under 1 point, for every field, the match and all fields together."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from scanbatch import estimates
from scanbatch.estimates import MATCH, MEASURES, OVERALL, Records
from scanbatch.names import FIELDS

AUDITS = 240
RECORDS = 500
DAY = 86400.0


def scans(rng: np.random.Generator, n: int = RECORDS) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """(truth per measure, field confidences, record confidence, created) of n scans.
    Hard records are hard for every field; newer scans are harder (a later crate is worse),
    so an order by time is as biased as an order by confidence. The reader is overconfident:
    a field right 70 % of the time is given about 0.9."""
    created = np.sort(rng.uniform(0, 28 * DAY, n))
    hardness = rng.beta(1.2, 6, n) + 0.15 * created / (28 * DAY)
    truth, confidence = {}, {}
    for k, name in enumerate(FIELDS):
        p = np.clip(0.99 - (0.6 + 0.1 * k) * hardness, 0.02, 0.995)
        truth[name] = (rng.random(n) < p).astype(float)
        conf = np.clip(0.55 + 0.45 * p**0.3 + rng.normal(0, 0.03, n), 0, 1)
        conf[rng.random(n) < 0.03] = np.nan  # the reader gave no confidence at all
        confidence[name] = conf
    truth[MATCH] = (rng.random(n) < np.clip(0.97 - hardness, 0.05, 1)).astype(float)
    truth[OVERALL] = np.mean([truth[f] for f in FIELDS], axis=0)
    record_confidence = np.nanmin(np.array([confidence[f] for f in FIELDS]), axis=0)
    return truth, confidence, record_confidence, created


Order = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]


def least_confident(reviewed, key, confidence, created) -> int:
    conf = np.where(np.isnan(confidence), -np.inf, confidence)
    return int(np.argmin(np.where(reviewed, np.inf, conf)))


def newest(reviewed, key, confidence, created) -> int:
    return int(np.argmax(np.where(reviewed, -np.inf, created)))


def audit(reviewed, key, confidence, created) -> int:
    return int(np.argmin(np.where(reviewed, np.inf, key)))


MIXES: dict[str, list[Order]] = {
    "audit only": [audit] * 60,
    "least confident then audit": [least_confident] * 50 + [audit] * 60,
    "newest then audit": [newest] * 50 + [audit] * 60,
    "interleaved": [least_confident, audit, newest, audit, audit] * 24,
}


def simulate(rng: np.random.Generator, orders: list[Order]) -> tuple[dict, dict]:
    truth, confidence, record_confidence, created = scans(rng)
    key = rng.random(RECORDS)
    reviewed = np.zeros(RECORDS, dtype=bool)
    for pick in orders:
        reviewed[pick(reviewed, key, record_confidence, created)] = True
    records = Records(
        key=key,
        confidence=record_confidence,
        created=created,
        reviewed=reviewed,
        right={m: np.where(reviewed, truth[m], np.nan) for m in MEASURES},
        field_confidence=confidence,
    )
    return estimates.measures(records), {m: float(truth[m].mean()) for m in MEASURES}


@pytest.mark.parametrize("mix", list(MIXES))
def test_the_interval_covers_the_truth_and_the_estimate_is_unbiased(mix: str) -> None:
    rng = np.random.default_rng(sum(map(ord, mix)))
    covered = {m: 0 for m in MEASURES}
    errors: dict[str, list[float]] = {m: [] for m in MEASURES}
    reviewed_only_errors = []
    for _ in range(AUDITS):
        found, true = simulate(rng, MIXES[mix])
        for m in MEASURES:
            est = found[m]
            assert est is not None, f"{mix}: no estimate for {m}"
            covered[m] += est["low"] <= true[m] <= est["high"]
            errors[m].append(est["accuracy"] - true[m])
    for m in MEASURES:
        coverage = covered[m] / AUDITS
        bias = float(np.mean(errors[m]))
        assert coverage >= 0.90, f"{mix}, {m}: the interval covered {coverage:.1%}"
        assert abs(bias) < 0.01, f"{mix}, {m}: mean bias {bias:+.4f}"
    del reviewed_only_errors
