"""`scanbatch experiment`: run prompt / model / extractor variants over a labelled dataset and
print the comparison (the same matrix as notebooks/experiments.ipynb); list past runs; compare
a past run again.

    scanbatch experiment run data/sample --variant gemini:v1 --variant gemini:v2 --variant ocr
    scanbatch experiment run data/sample --variants variants.yaml --repeat 3
    scanbatch experiment list
    scanbatch experiment compare <run> [--baseline NAME]

"""

from __future__ import annotations

import json
from pathlib import Path

import click

from scanbatch.cli import ScanbatchGroup, settings


@click.group(cls=ScanbatchGroup, name="experiment")
def experiment() -> None:
    """Compare prompt, model and extractor variants on a labelled dataset."""


@experiment.command("run")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--variant",
    "variant_specs",
    multiple=True,
    metavar="SPEC",
    help="extractor[:prompt_version][@model], e.g. ocr, gemini:v2, gemini:v1@gemini-2.5-flash; "
    "repeat for each variant",
)
@click.option(
    "--variants",
    "variants_file",
    type=click.Path(path_type=Path),
    help="YAML or JSON file: a list of variants ({extractor, model, prompt_version, "
    "temperature, options, name}); YAML needs PyYAML",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="run each variant k times, to see how much a model varies",
)
@click.option("--name", help="run name (default: a dated one)")
@click.option(
    "--catalog",
    help="catalog CSV or Parquet snapshot to match against, or 'none' (default: the "
    "dataset's, else the server's snapshot, else the sample catalog)",
)
@click.option("--concurrency", type=click.IntRange(1, 64), help="items at once per variant")
@click.option("--baseline", help="variant the others are compared with (default: the first)")
@click.option("--prices", type=click.Path(path_type=Path), help="price table (data/prices.json)")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="also write the matrix")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def run_cmd(
    dataset: Path,
    variant_specs: tuple[str, ...],
    variants_file: Path | None,
    repeat: int,
    name: str | None,
    catalog: str | None,
    concurrency: int | None,
    baseline: str | None,
    prices: Path | None,
    json_out: Path | None,
    no_progress: bool,
) -> None:
    """Run variants over DATASET (a folder with photos, manifest.json and truth.json) and
    print the comparison. Without --variant/--variants: Gemini with prompts v1 and v2, and
    the offline ocr extractor."""
    from scanbatch.experiments import compare, load_prices, run_experiment

    if variant_specs and variants_file:
        raise click.UsageError("give --variant (repeatable) or --variants FILE, not both")
    variants = list(variant_specs) if variant_specs else variants_file
    table = load_prices(prices)  # a broken price table fails before the run, not after
    run = run_experiment(
        dataset,
        variants,
        settings=settings(),
        repeat=repeat,
        name=name,
        catalog=catalog,
        concurrency=concurrency,
        progress=not no_progress,
        on_notice=lambda line: click.echo(line, err=True),
    )
    comparison = compare(run, baseline=baseline, prices=table)
    click.echo(comparison.format_text())
    click.echo(f"\nrecorded in {run.path}")
    _write_json(comparison, json_out)


@experiment.command("list")
def list_cmd() -> None:
    """Past runs, newest first."""
    from scanbatch.experiments import experiments_dir, list_runs

    root = experiments_dir(settings())
    runs = list_runs(root)
    if not runs:
        click.echo(f"no experiment runs in {root} yet: `experiment run DATASET` makes one")
        return
    for r in runs:
        click.echo(
            f"{r['run']:<28} {r['createdAt'] or '':<21} {r['items'] or 0:>4} items  "
            f"repeat {r['repeat'] or 1}  {', '.join(r['variants'])}  ({r['dataset']})"
        )


@experiment.command("compare")
@click.argument("run")
@click.option("--baseline", help="variant the others are compared with (default: the first)")
@click.option("--prices", type=click.Path(path_type=Path), help="price table (data/prices.json)")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="also write the matrix")
def compare_cmd(run: str, baseline: str | None, prices: Path | None, json_out: Path | None) -> None:
    """Print the comparison of a past RUN (a name from `list`, or its folder)."""
    from scanbatch.experiments import compare, experiments_dir, load_prices, load_run

    record = load_run(experiments_dir(settings()), run)
    comparison = compare(record, baseline=baseline, prices=load_prices(prices))
    click.echo(comparison.format_text())
    _write_json(comparison, json_out)


def _write_json(comparison: object, out: Path | None) -> None:
    if out is None:
        return
    from scanbatch.experiments.compare import Comparison

    assert isinstance(comparison, Comparison)
    doc = {
        "run": comparison.run.name,
        "prices": {"date": comparison.prices.date, "currency": comparison.prices.currency},
        "matrix": comparison.matrix_rows(),
        "pairs": [
            {
                "baseline": p.baseline,
                "candidate": p.candidate,
                "items": p.n,
                "intervals": {k: None if iv is None else vars(iv) for k, iv in p.intervals.items()},
                "mcnemar": {k: vars(t) for k, t in p.tests.items()},
                "regressions": p.regressions,
                "fixes": p.fixes,
            }
            for p in comparison.pairs
        ],
        "errors": comparison.errors(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    click.echo(f"wrote {out}")
