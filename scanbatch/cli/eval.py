"""`scanbatch eval TRUTH.json RESULTS [--json OUT]`: score a job's results against ground
truth. RESULTS is a results.jsonl, a job folder, or a job status JSON from the API."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scanbatch.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a job's results against a truth.json",
        description="Per-field exact match (after normalising case, accents, punctuation; "
        "UPC digits) and similarity, catalog match accuracy and confidence calibration.",
    )
    p.add_argument("truth", type=Path, metavar="TRUTH.json", help="truth file (scanbatch synth)")
    p.add_argument(
        "results",
        type=Path,
        metavar="RESULTS",
        help="results.jsonl, a job folder, or a job status JSON (GET /library/scan/batch/<id>)",
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the report as JSON")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from scanbatch.evaluate import evaluate, load_outcomes, load_truth

    report = evaluate(load_truth(args.truth), load_outcomes(args.results))
    print(report.format_table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
        print(f"\nwrote {args.json}")
    return 0
