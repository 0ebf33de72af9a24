"""`scanbatch eval TRUTH.json RESULTS... [--json OUT]`: score results against ground truth.
Each RESULTS is a results.jsonl, a job folder, a job status JSON from the API, or the JSON
`scanbatch run` prints for a dataset it ran as several jobs."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("eval")
@click.argument("truth", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--json", "json_out", type=click.Path(path_type=Path), help="Also write the report as JSON."
)
def command(truth: Path, results: tuple[Path, ...], json_out: Path | None) -> None:
    """Score results against ground truth.

    TRUTH is a truth.json (from `scanbatch synth` or a review export). RESULTS are one or more
    results.jsonl files, job folders, job status JSONs (GET /library/scan/batch/<id>), or the
    JSON `scanbatch run` printed. A dataset of more than one batch runs as several jobs, each
    numbering its items from 0: each job is put back at its place in the dataset (from the
    printed JSON's firstItem, else by its photos; never by the order given).
    Per-field exact match (after normalising case, accents, punctuation; UPC digits) and
    similarity, catalog match accuracy and confidence calibration.
    """
    from scanbatch.evaluate import evaluate, load_dataset_outcomes, load_truth

    jobs = load_dataset_outcomes(truth, results)
    if len(jobs) > 1:
        for job in jobs:
            indexes = sorted(o.item_index for o in job.outcomes)
            span = f"{indexes[0]}-{indexes[-1]}" if indexes else "none"
            click.echo(
                f"{job.label}: {len(indexes)} results, dataset items {span} "
                f"(placed by {job.placed_by})"
            )
        click.echo()
    report = evaluate(load_truth(truth), [o for job in jobs for o in job.outcomes])
    click.echo(report.format_table())
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
        click.echo(f"\nwrote {json_out}")
