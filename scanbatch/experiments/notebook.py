"""What `notebooks/experiments.ipynb` calls, so that the notebook stays a page of parameters,
prose and displays."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scanbatch.experiments.compare import Comparison, compare
from scanbatch.experiments.execute import experiments_dir, run_experiment
from scanbatch.experiments.records import load_run
from scanbatch.prices import load_prices
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
    import pandas as pd

    rows = c.matrix_rows()
    table = {r["variant"]: {k: _cell(k, v) for k, v in r.items() if k not in _HIDDEN} for r in rows}
    return pd.DataFrame(table)


_HIDDEN = ("variant", "cost note")


def _cell(key: str, value: Any) -> str:
    """Counts as whole numbers, milliseconds and tokens rounded, money to 4 places."""
    if value is None:
        return "-"
    if isinstance(value, int) or key.startswith(("latency", "tokens")):
        return f"{value:,.0f}"
    if "USD" in key or "cost" in key or "paid" in key:
        return f"{value:.4f}"
    return f"{value:.3f}"


def show_table(frame: Any) -> None:
    """Display a DataFrame in full: verdicts are sentences, and pandas cuts cells at 50."""
    import pandas as pd
    from IPython.display import display

    with pd.option_context("display.max_colwidth", None, "display.max_rows", 500):
        display(frame)


def print_cost_and_failures(c: Comparison, *, limit: int = 30) -> None:
    """The price table's date and source, each variant's cost note, and the failed records
    (the first `limit`) with their errors."""
    print(f"prices as of {c.prices.date} ({c.prices.currency}) from {c.prices.path}")
    for row in c.matrix_rows():
        if row["cost note"]:
            print(f"{row['variant']}: {row['cost note']}")
    errors = c.errors()
    print(f"failed records: {len(errors)}")
    for e in errors[:limit]:
        print(
            f"  {e['variant']} item {e['itemIndex']} (repeat {e['repeat']}): "
            f"{e['errorCode']}: {e['errorMessage']}"
        )
