"""The price table: a dated JSON file anyone can edit (`data/prices.json`). Token prices per
model, flat prices per item for extractors that do not count tokens (the offline OCR is free),
and the fraction of them a batch-API request costs (Google's Batch API: half). A model missing
from the table gets no cost and a note saying which entry to add. Experiments price their
runs with it; every stored result is priced with it when it is read (`Usage.cost`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from scanbatch.errors import BadRequest
from scanbatch.models import Usage
from scanbatch.settings import SHIPPED_DATA

DEFAULT_PRICES = SHIPPED_DATA / "prices.json"


@dataclass(frozen=True)
class PriceTable:
    date: str
    currency: str
    models: dict[str, dict[str, float]]
    extractors: dict[str, dict[str, float]]
    path: Path
    batch_discount: float = 0.5

    def cost(
        self,
        extractor: str,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        *,
        batch: bool = False,
    ) -> float | None:
        """Cost of one request (`batch`: sent through the batch API, at its price), or None
        when the table has no price for it."""
        if model is not None and model in self.models:
            price = self.models[model]
            full = ((input_tokens or 0) * price.get("inputPerMillionTokens", 0.0)) / 1e6 + (
                (output_tokens or 0) * price.get("outputPerMillionTokens", 0.0)
            ) / 1e6
            return full * self.batch_discount if batch else full
        if extractor in self.extractors:
            return float(self.extractors[extractor].get("perItem", 0.0))
        return None

    def missing_note(self, extractor: str, model: str | None) -> str:
        what = f'"models": {{"{model}": ...}}' if model else f'"extractors": {{"{extractor}": ...}}'
        return f"no price for {model or extractor}: add {what} to {self.path}"


def load_prices(path: str | Path | None = None) -> PriceTable:
    p = Path(path) if path is not None else DEFAULT_PRICES
    try:
        data: Any = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadRequest(
            f"price table {p} does not exist (the shipped one is {DEFAULT_PRICES})"
        ) from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"price table {p} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("date"), str):
        raise BadRequest(f"price table {p} needs a `date` (when the prices were checked)")
    models = data.get("models", {})
    extractors = data.get("extractors", {})
    for section, table in (("models", models), ("extractors", extractors)):
        if not isinstance(table, dict) or not all(
            isinstance(v, dict) and all(isinstance(x, int | float) for x in v.values())
            for v in table.values()
        ):
            raise BadRequest(
                f"price table {p}: `{section}` must map names to objects of numbers, e.g. "
                '{"gemini-2.5-flash": {"inputPerMillionTokens": 0.3, '
                '"outputPerMillionTokens": 2.5}}'
            )
    discount = data.get("batchPriceFraction", 0.5)
    if not isinstance(discount, int | float) or not 0 < discount <= 1:
        raise BadRequest(
            f"price table {p}: `batchPriceFraction` must be a number in (0, 1] (what a "
            "batch-API request costs against the standard price; Google's: 0.5)"
        )
    return PriceTable(
        data["date"], str(data.get("currency", "USD")), models, extractors, p, float(discount)
    )


@cache
def _shipped_prices(stamp: tuple[int, int]) -> PriceTable:
    return load_prices(DEFAULT_PRICES)


def usage_cost(usage: Usage) -> float | None:
    """What one stored result cost by the price table (`data/prices.json`, read again when it
    changes), at the batch price when it was answered through a batch API; None when the table
    has no price for it (or cannot be read: the result is kept, unpriced)."""
    try:
        stat = DEFAULT_PRICES.stat()
        table = _shipped_prices((stat.st_mtime_ns, stat.st_size))
    except (OSError, BadRequest):
        return None
    return table.cost(
        usage.extractor, usage.model, usage.input_tokens, usage.output_tokens, batch=usage.batch
    )
