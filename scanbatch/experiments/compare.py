"""Comparing the variants of one run: a matrix of variants × fields (scored by
`scanbatch.evaluate`, the same code as `scanbatch eval` and the metrics route), match precision
and recall, calibration (ECE), latency, tokens and cost; for each pair of variants the accuracy
difference with a paired bootstrap interval and McNemar's test on the items both saw; and the
regressions and disagreements, item by item."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from scanbatch.errors import BadRequest
from scanbatch.evaluate import EvalReport, evaluate, normalize
from scanbatch.experiments.records import RunRecord
from scanbatch.experiments.stats import Interval, McNemar, mcnemar, paired_bootstrap, percentile
from scanbatch.names import FIELDS
from scanbatch.prices import PriceTable, load_prices

OVERALL = "all fields"


@dataclass
class VariantResult:
    name: str
    meta: dict[str, Any]
    records: list[dict[str, Any]]
    reports: list[EvalReport]  # one per repeat

    @property
    def runnable(self) -> bool:
        return bool(self.meta.get("runnable"))

    def by_item(self, repeat: int) -> dict[int, dict[str, Any]]:
        return {r["itemIndex"]: r for r in self.records if r["repeat"] == repeat}


@dataclass
class PairResult:
    baseline: str
    candidate: str
    n: int  # items both saw (completed in every repeat, in both variants)
    intervals: dict[str, Interval | None]  # per field and OVERALL
    tests: dict[str, McNemar]  # per field (first repeat); OVERALL: the sign test on items
    regressions: list[dict[str, Any]] = field(default_factory=list)
    fixes: list[dict[str, Any]] = field(default_factory=list)


def verdict(pair: PairResult, key: str) -> str:
    """Plain words for one field of a pair. "Better" needs the bootstrap interval to exclude 0
    AND the exact test's p < 0.05: on a few dozen records the percentile bootstrap alone is
    too eager (with 8 records and 3 regressions it excludes 0 while McNemar's p is 0.25)."""
    iv = pair.intervals.get(key)
    if iv is None:
        return "nothing to compare"
    if not iv.excludes_zero:
        return "no clear difference"
    better = pair.candidate if iv.low > 0 else pair.baseline
    test = pair.tests.get(key)
    if test is not None and test.p_value >= 0.05:
        return f"{better} looks better; too few records to be sure (p={test.p_value:.2f})"
    return f"{better} better"


def _outcomes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "itemIndex": r["itemIndex"],
            "status": r["status"],
            "extraction": r.get("extraction") or {},
            "matchedAlbumId": r.get("matchedAlbumId"),
        }
        for r in records
    ]


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


class Comparison:
    def __init__(
        self, run: RunRecord, *, baseline: str | None = None, prices: PriceTable | None = None
    ) -> None:
        self.run = run
        self.prices = prices or load_prices()
        self.truth = {int(t["itemIndex"]): t for t in run.truth}
        self.repeat = int(run.meta.get("repeat") or 1)
        self.variants: list[VariantResult] = []
        for meta in run.variants:
            records = run.records_for(meta["name"])
            reports = (
                [
                    evaluate(run.truth, _outcomes([r for r in records if r["repeat"] == k]))
                    for k in range(self.repeat)
                ]
                if meta.get("runnable")
                else []
            )
            self.variants.append(VariantResult(meta["name"], meta, records, reports))
        names = [v.name for v in self.runnable]
        if baseline is not None and baseline not in names:
            raise BadRequest(
                f"baseline {baseline!r} is not a variant that ran in run {run.name}; "
                f"choose one of {', '.join(names) or 'none'}"
            )
        self.baseline = baseline or (names[0] if names else None)

    @property
    def runnable(self) -> list[VariantResult]:
        return [v for v in self.variants if v.runnable]

    @property
    def not_runnable(self) -> list[VariantResult]:
        return [v for v in self.variants if not v.runnable]

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.name == name)

    # --- the matrix -------------------------------------------------------------------------

    def _cost(self, v: VariantResult) -> tuple[float | None, float | None, str | None]:
        """Cost per item (as if run fresh), cost this run actually paid, and a note."""
        done = [r for r in v.records if r["status"] == "completed" or r.get("inputTokens")]
        if not done:
            return None, None, None
        model = v.meta.get("model")
        costs = [
            self.prices.cost(
                v.meta["extractor"],
                model,
                r.get("inputTokens"),
                r.get("outputTokens"),
                batch=r.get("billing") == "batch",  # a batch variant's records: half price
            )
            for r in done
        ]
        if any(c is None for c in costs):
            return None, None, self.prices.missing_note(v.meta["extractor"], model)
        paid = sum(c for c, r in zip(costs, done, strict=True) if not r.get("cached"))
        return sum(costs) / len(done), paid, None  # type: ignore[arg-type]

    def matrix_rows(self) -> list[dict[str, Any]]:
        """One row per variant that ran: the figures of the matrix (means over repeats)."""
        rows = []
        for v in self.runnable:
            reps = v.reports
            row: dict[str, Any] = {"variant": v.name}
            for name in FIELDS:
                row[f"{name} acc"] = _mean([r.fields[name].accuracy for r in reps])
                row[f"{name} sim"] = _mean([r.fields[name].similarity for r in reps])
            row[f"{OVERALL} acc"] = _mean([r.overall.accuracy for r in reps])
            row[f"{OVERALL} sim"] = _mean([r.overall.similarity for r in reps])
            if self.repeat > 1:
                accs = [r.overall.accuracy or 0.0 for r in reps]
                row["acc range over repeats"] = max(accs) - min(accs)
            row["match precision"] = _mean([_precision(r) for r in reps])
            row["match recall"] = _mean([_recall(r) for r in reps])
            row["ECE"] = _mean([r.ece for r in reps])
            latencies = [r.get("latencyMs") for r in v.records if r["status"] == "completed"]
            row["latency p50 ms"] = percentile(latencies, 50)
            row["latency p95 ms"] = percentile(latencies, 95)
            done = [r for r in v.records if r["status"] == "completed"]
            row["tokens in/item"] = _mean([r.get("inputTokens") for r in done])
            row["tokens out/item"] = _mean([r.get("outputTokens") for r in done])
            per_item, paid, note = self._cost(v)
            row[f"cost/1000 items {self.prices.currency}"] = (
                per_item * 1000 if per_item is not None else None
            )
            row[f"paid this run {self.prices.currency}"] = paid
            row["cost note"] = note
            row["failed"] = sum(1 for r in v.records if r["status"] == "failed")
            row["from cache"] = sum(1 for r in v.records if r.get("cached"))
            row["results"] = len(v.records)
            rows.append(row)
        return rows

    def matrix(self) -> Any:
        """The matrix as a pandas DataFrame, variants as rows."""
        import pandas as pd

        return pd.DataFrame(self.matrix_rows()).set_index("variant")

    # --- pairs ------------------------------------------------------------------------------

    @cached_property
    def pairs(self) -> list[PairResult]:
        """Every pair of variants that ran; the baseline first in each of its pairs."""
        names = [v.name for v in self.runnable]
        if self.baseline in names:
            names.remove(self.baseline)
            names.insert(0, self.baseline)
        return [self._pair(a, b) for a, b in itertools.combinations(names, 2)]

    def _paired_items(self, a: VariantResult, b: VariantResult) -> list[int]:
        def ok(v: VariantResult, idx: int) -> bool:
            return all(
                (v.by_item(k).get(idx) or {}).get("status") == "completed"
                for k in range(self.repeat)
            )

        return [i for i in sorted(self.truth) if ok(a, i) and ok(b, i)]

    def _correct(self, v: VariantResult, idx: int, name: str, repeat: int) -> bool:
        return bool(v.reports[repeat].details[self._pos[idx]][name]["exact"])

    @cached_property
    def _pos(self) -> dict[int, int]:
        return {idx: pos for pos, idx in enumerate(sorted(self.truth))}

    def _pair(self, a_name: str, b_name: str) -> PairResult:
        a, b = self.variant(a_name), self.variant(b_name)
        items = self._paired_items(a, b)
        intervals: dict[str, Interval | None] = {}
        tests: dict[str, McNemar] = {}
        scored_a = {i: [0.0] * len(items) for i in (*FIELDS, OVERALL)}
        scored_b = {i: [0.0] * len(items) for i in (*FIELDS, OVERALL)}
        counts = {i: [0.0] * len(items) for i in (*FIELDS, OVERALL)}
        for pos, idx in enumerate(items):
            for name in FIELDS:
                if self.truth[idx].get(name) in (None, ""):
                    continue
                ca = sum(self._correct(a, idx, name, k) for k in range(self.repeat)) / self.repeat
                cb = sum(self._correct(b, idx, name, k) for k in range(self.repeat)) / self.repeat
                for key in (name, OVERALL):
                    scored_a[key][pos] += ca
                    scored_b[key][pos] += cb
                    counts[key][pos] += 1
        for key in (*FIELDS, OVERALL):
            intervals[key] = paired_bootstrap(scored_a[key], scored_b[key], counts[key])
        # Over all fields, the exact sign test on the items: which variant read more of the
        # item right (McNemar's test is the same test on one binary outcome).
        sa, sb = scored_a[OVERALL], scored_b[OVERALL]
        tests[OVERALL] = mcnemar(
            [x > y for x, y in zip(sa, sb, strict=True)],
            [y > x for x, y in zip(sa, sb, strict=True)],
        )
        result = PairResult(a_name, b_name, len(items), intervals, tests)
        for name in FIELDS:
            with_truth = [i for i in items if self.truth[i].get(name) not in (None, "")]
            tests[name] = mcnemar(
                [self._correct(a, i, name, 0) for i in with_truth],
                [self._correct(b, i, name, 0) for i in with_truth],
            )
            for i in with_truth:
                ra, rb = self._correct(a, i, name, 0), self._correct(b, i, name, 0)
                if ra != rb:
                    entry = {
                        "itemIndex": i,
                        "field": name,
                        "truth": self.truth[i].get(name),
                        a_name: _value(a, i, name),
                        b_name: _value(b, i, name),
                    }
                    (result.regressions if ra else result.fixes).append(entry)
        return result

    # --- disagreements ----------------------------------------------------------------------

    def disagreements(self) -> list[dict[str, Any]]:
        """(item, field) where the variants that ran read different values (first repeat);
        each with the truth and every variant's value and whether it is right."""
        out = []
        vs = self.runnable
        for idx in sorted(self.truth):
            for name in FIELDS:
                values = {v.name: _value(v, idx, name) for v in vs}
                if len({normalize(name, x) for x in values.values()}) <= 1:
                    continue
                true = self.truth[idx].get(name)
                out.append(
                    {
                        "itemIndex": idx,
                        "field": name,
                        "truth": true,
                        "values": values,
                        "correct": {
                            n: x is not None
                            and true not in (None, "")
                            and normalize(name, x) == normalize(name, true)
                            for n, x in values.items()
                        },
                    }
                )
        return out

    def errors(self) -> list[dict[str, Any]]:
        """Every failed item: variant, repeat, item, error code and message."""
        return [
            {
                "variant": r["variant"],
                "repeat": r["repeat"],
                "itemIndex": r["itemIndex"],
                "errorCode": r.get("errorCode"),
                "errorMessage": r.get("errorMessage"),
            }
            for v in self.runnable
            for r in sorted(v.records, key=lambda r: (r["repeat"], r["itemIndex"]))
            if r["status"] == "failed"
        ]

    # --- text -------------------------------------------------------------------------------

    def format_text(self, *, max_rows: int = 20) -> str:
        """What the CLI prints: the matrix (metrics as rows, one column per variant), the pairs
        with their intervals, and the regressions."""
        lines = [
            f"run {self.run.name}: {len(self.truth)} items from {self.run.meta['dataset']['path']}"
            f", repeat {self.repeat}; prices of {self.prices.date} ({self.prices.path.name})"
        ]
        for v in self.not_runnable:
            lines.append(f"not runnable: {v.name}: {v.meta.get('reason')}")
        rows = self.matrix_rows()
        if not rows:
            lines.append("no variant ran")
            return "\n".join(lines)
        names = [r["variant"] for r in rows]
        width = max(12, *(len(n) + 2 for n in names))
        metrics = [k for k in rows[0] if k not in ("variant", "cost note")]
        head = f"{'':<26}" + "".join(f"{n:>{width}}" for n in names)
        lines += ["", head]
        for key in metrics:
            lines.append(f"{key:<26}" + "".join(f"{_fmt(r[key]):>{width}}" for r in rows))
        for r in rows:
            if r["cost note"]:
                lines.append(f"cost of {r['variant']}: {r['cost note']}")
        for pair in self.pairs:
            lines += [
                "",
                f"{pair.candidate} vs {pair.baseline}: accuracy difference on the {pair.n} items "
                "both read (95 % paired bootstrap interval; exact McNemar p, sign test p for "
                "all fields)",
            ]
            for key in (*FIELDS, OVERALL):
                iv = pair.intervals[key]
                test = pair.tests.get(key)
                words = verdict(pair, key)
                note = (
                    "" if words in ("no clear difference", "nothing to compare") else f"  {words}"
                )
                p = f"  p={test.p_value:.3f}" if test is not None else ""
                text = (
                    "   -"
                    if iv is None
                    else f"{iv.difference:+.3f}  [{iv.low:+.3f}, {iv.high:+.3f}]"
                )
                lines.append(f"  {key:<16}{text}{p}{note}")
            lines.append(
                f"  regressions (right in {pair.baseline}, wrong in {pair.candidate}): "
                f"{len(pair.regressions)}; fixes: {len(pair.fixes)}"
            )
            for reg in pair.regressions[:max_rows]:
                lines.append(
                    f"    item {reg['itemIndex']} {reg['field']}: truth {reg['truth']!r}, "
                    f"{pair.baseline} {reg[pair.baseline]!r}, {pair.candidate} "
                    f"{reg[pair.candidate]!r}"
                )
        errors = self.errors()
        if errors:
            lines += ["", f"failed items: {len(errors)}"]
            for e in errors[:max_rows]:
                lines.append(
                    f"  {e['variant']} item {e['itemIndex']} (repeat {e['repeat']}): "
                    f"{e['errorCode']}: {e['errorMessage']}"
                )
        return "\n".join(lines)


def _value(v: VariantResult, idx: int, name: str, repeat: int = 0) -> str | None:
    rec = v.by_item(repeat).get(idx) or {}
    entry = (rec.get("extraction") or {}).get(name)
    return entry.get("value") if isinstance(entry, dict) else None


def _precision(r: EvalReport) -> float | None:
    m = r.match
    made = m.in_catalog_correct + m.wrong_album + m.false_match
    return m.in_catalog_correct / made if made else None


def _recall(r: EvalReport) -> float | None:
    m = r.match
    return m.in_catalog_correct / m.in_catalog if m.in_catalog else None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def compare(
    run: RunRecord, *, baseline: str | None = None, prices: PriceTable | None = None
) -> Comparison:
    return Comparison(run, baseline=baseline, prices=prices)
