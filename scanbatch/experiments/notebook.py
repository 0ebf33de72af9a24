"""What `notebooks/experiments.ipynb` calls, so that the notebook stays a page of parameters,
prose and displays."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scanbatch.experiments.compare import Comparison, compare
from scanbatch.experiments.prices import load_prices
from scanbatch.experiments.records import load_run
from scanbatch.experiments.runner import experiments_dir, run_experiment
from scanbatch.settings import REPO_ROOT, load_settings


def run_or_load(
    dataset: str,
    variants: Any,
    *,
    repeat: int = 1,
    run_name: str = "",
    catalog: str = "",
    baseline: str = "",
    prices: str = "",
    compare_run: str = "",
) -> Comparison:
    """Run the experiment (or, with `compare_run`, load a past run) and compare its variants.
    Relative paths are the repository's: Jupyter starts notebooks in `notebooks/`."""
    if Path.cwd().resolve() == (REPO_ROOT / "notebooks").resolve():
        os.chdir(REPO_ROOT)
    settings = load_settings()
    table = load_prices(prices or None)
    if compare_run:
        run = load_run(experiments_dir(settings), compare_run)
    else:
        run = run_experiment(
            dataset,
            variants,
            settings=settings,
            repeat=repeat,
            name=run_name or None,
            catalog=catalog or None,
        )
    comparison = compare(run, baseline=baseline or None, prices=table)
    ran = ", ".join(v.name for v in comparison.runnable) or "none"
    print(
        f"run {run.name}: {len(comparison.truth)} items, variants that ran: {ran}; "
        f"recorded in {run.path}"
    )
    for v in comparison.not_runnable:
        print(f"not runnable: {v.name}: {v.meta.get('reason')}")
    return comparison


def matrix_for_display(c: Comparison) -> Any:
    """The matrix with metrics as rows and one column per variant, rounded for reading."""
    m = c.matrix()
    if m.empty:
        return m
    return m.drop(columns=["cost note"]).T.map(lambda v: round(v, 3) if isinstance(v, float) else v)
