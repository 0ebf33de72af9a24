"""Experiments: run prompt / model / extractor variants over a labelled dataset and compare
them field by field, with intervals, latency, tokens and cost (`notebooks/experiments.ipynb`,
`scanbatch experiment`). Runs are recorded under `<data_dir>/experiments/<run>/`, never in the
server's store; a disk cache answers identical requests, so re-running costs nothing."""

from scanbatch.experiments.compare import Comparison, compare
from scanbatch.experiments.dataset import Dataset, load_dataset
from scanbatch.experiments.execute import experiments_dir, run_experiment
from scanbatch.experiments.records import RunRecord, list_runs, load_run
from scanbatch.experiments.stats import mcnemar, paired_bootstrap
from scanbatch.experiments.variants import (
    DEFAULT_VARIANTS,
    Variant,
    build_extractor,
    read_variants,
    validate_variants,
)
from scanbatch.prices import PriceTable, load_prices

__all__ = [
    "DEFAULT_VARIANTS",
    "Comparison",
    "Dataset",
    "PriceTable",
    "RunRecord",
    "Variant",
    "build_extractor",
    "compare",
    "experiments_dir",
    "list_runs",
    "load_dataset",
    "load_prices",
    "load_run",
    "mcnemar",
    "paired_bootstrap",
    "read_variants",
    "run_experiment",
    "validate_variants",
]
