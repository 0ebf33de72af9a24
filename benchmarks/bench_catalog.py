"""Catalog matching benchmark: prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_catalog.py [--albums 64000] [--per-kind 300]

Latency: one `CatalogMatcher.best` call per query, against the generated catalog loaded from
its Parquet snapshot (the path the processing kernel takes). Quality: the generated query set
of `scanbatch.catalog.quality` with known answers, precision and recall per kind."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scanbatch.catalog import (
    CATALOG_MIGRATION_SQL,
    CatalogMatcher,
    export_snapshot,
    generate_catalog,
    import_csv,
    write_csv,
)
from scanbatch.catalog.quality import KINDS, make_queries, score_queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--albums", type=int, default=64_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-kind", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rows = generate_catalog(args.albums, args.seed)
        t1 = time.perf_counter()
        csv_path = Path(tmp) / "catalog.csv"
        with csv_path.open("w", encoding="utf-8", newline="") as out:
            write_csv(rows, out)
        con = duckdb.connect(str(Path(tmp) / "store.duckdb"))
        con.execute(CATALOG_MIGRATION_SQL)
        t2 = time.perf_counter()
        summary = import_csv(con, csv_path)
        t3 = time.perf_counter()
        reimport = import_csv(con, csv_path)
        t4 = time.perf_counter()
        snapshot = Path(tmp) / "catalog.parquet"
        export_snapshot(con, snapshot)
        t5 = time.perf_counter()
        matcher = CatalogMatcher.from_parquet(snapshot)
        t6 = time.perf_counter()
        con.close()
    print(f"catalog: {len(rows)} albums, {len({r['artist'] for r in rows})} artists")
    print(f"generate {t1 - t0:.2f} s | import {t3 - t2:.2f} s ({summary}) | ")
    print(
        f"re-import {t4 - t3:.2f} s ({reimport}) | snapshot {t5 - t4:.2f} s | load {t6 - t5:.2f} s"
    )

    queries = make_queries(rows, args.per_kind, seed=args.seed + 1)
    random.Random(0).shuffle(queries)
    for q in queries[:50]:  # warm up
        matcher.best(q.artist, q.title)
    latencies: dict[str, list[float]] = {k: [] for k in KINDS}
    for q in queries:
        started = time.perf_counter()
        matcher.best(q.artist, q.title)
        latencies[q.kind].append((time.perf_counter() - started) * 1000)
    every = sorted(x for xs in latencies.values() for x in xs)

    def p(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    print(f"\nlatency per item, {len(every)} queries (ms): median {statistics.median(every):.2f}"
          f"  p90 {p(every, 0.90):.2f}  p99 {p(every, 0.99):.2f}  max {every[-1]:.2f}")  # fmt: skip
    for kind, xs in latencies.items():
        print(f"  {kind:15} median {statistics.median(xs):6.2f}  p99 {p(xs, 0.99):6.2f}")
    batch = queries[:1000]
    started = time.perf_counter()
    for q in batch:
        matcher.best(q.artist, q.title)
    elapsed = time.perf_counter() - started
    print(f"batch of {len(batch)} mixed queries: {elapsed:.2f} s, {len(batch) / elapsed:.0f} q/s")

    scores = score_queries(matcher, queries)
    print(f"\nquality (min score {matcher.min_score}):")
    print(f"  {'kind':15} {'n':>5} {'matched':>8} {'correct':>8} {'precision':>10} {'recall':>7}")
    for kind, s in scores.items():
        recall = f"{s.recall:7.3f}" if s.answerable else "    n/a"
        print(f"  {kind:15} {s.total:5} {s.matched:8} {s.correct:8} {s.precision:10.3f} {recall}")


if __name__ == "__main__":
    main()
