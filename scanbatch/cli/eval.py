"""`scanbatch eval TRUTH.json RESULTS [--json OUT]`: score a job's results against ground
truth. RESULTS is a results.jsonl, a job folder, or a job status JSON from the API."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("eval")
@click.argument("truth", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("results", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--json", "json_out", type=click.Path(path_type=Path), help="Also write the report as JSON."
)
def command(truth: Path, results: Path, json_out: Path | None) -> None:
    """Score a job's results against ground truth.

    TRUTH is a truth.json (from `scanbatch synth` or a review export). RESULTS is a
    results.jsonl, a job folder, or a job status JSON (GET /library/scan/batch/<id>).
    Per-field exact match (after normalising case, accents, punctuation; UPC digits) and
    similarity, catalog match accuracy and confidence calibration.
    """
    from scanbatch.evaluate import evaluate, load_outcomes, load_truth

    report = evaluate(load_truth(truth), load_outcomes(results))
    click.echo(report.format_table())
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
        click.echo(f"\nwrote {json_out}")
