"""The upload's choice between reading a crate now and sending it to the backlog (Google's
Batch API): what each costs per 1,000 records, from the price table (`data/prices.json`) and
the server's past jobs when it has priced some, and how long each may take. A server whose
extractor cannot batch (the offline `ocr`) runs backlog jobs as usual: the choice says so."""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets

from scanbatch.client import Client
from scanbatch.errors import ConfigError
from scanbatch.extractors import get_extractor_class
from scanbatch.models import BacklogState, JobMode, JobView
from scanbatch.prices import PriceTable, load_prices

MODES = (("Read now", JobMode.INTERACTIVE.value), ("Backlog", JobMode.BACKLOG.value))
# A typical record when no past job says better: three photos (about 1,100 tokens each at
# Gemini's default image resolution) and the prompt in; the six fields, with thinking, out.
TYPICAL_INPUT_TOKENS = 4000
TYPICAL_OUTPUT_TOKENS = 400
PAST_JOBS = 5  # the recent finished jobs whose cost the estimate goes by


@dataclass(frozen=True)
class Estimate:
    """What 1,000 records cost read now and through the backlog (None: unpriced), and what
    the figures rest on, in words."""

    now: float | None
    backlog: float | None
    currency: str
    basis: str


@dataclass(frozen=True)
class Server:
    extractor: str
    can_batch: bool


def typical_estimate(server: Server, prices: PriceTable) -> Estimate:
    """From the price table, for a typical record on the extractor's default model."""
    model = default_model(server.extractor)
    now = prices.cost(server.extractor, model, TYPICAL_INPUT_TOKENS, TYPICAL_OUTPUT_TOKENS)
    if now is None:
        return Estimate(None, None, prices.currency, prices.missing_note(server.extractor, model))
    backlog = prices.cost(
        server.extractor, model, TYPICAL_INPUT_TOKENS, TYPICAL_OUTPUT_TOKENS, batch=True
    )
    basis = (
        f"assuming about {TYPICAL_INPUT_TOKENS:,} input and {TYPICAL_OUTPUT_TOKENS:,} output "
        f"tokens a record (three photos) on {model}"
        if model
        else f"{server.extractor} is priced per record"
    )
    return Estimate(1000 * now, 1000 * backlog, prices.currency, basis)  # type: ignore[operator]


def past_estimate(views: list[JobView], prices: PriceTable) -> Estimate | None:
    """From what the server's recent jobs cost a record (at the price each was billed at),
    or None when none of them was priced."""
    full, records, jobs = 0.0, 0, 0
    for view in views:
        if view.cost is None or view.completed_items == 0:
            continue
        batched = view.mode == JobMode.BACKLOG and (
            view.backlog is None or view.backlog.state != BacklogState.INTERACTIVE
        )
        # Back to the full price, so that both figures come from the same records.
        full += view.cost / prices.batch_discount if batched else view.cost
        records += view.completed_items
        jobs += 1
    if not records:
        return None
    now = 1000 * full / records
    return Estimate(
        now,
        now * prices.batch_discount,
        prices.currency,
        f"what the last {jobs} job(s) cost ({records:,} records read)",
    )


def default_model(extractor: str) -> str | None:
    """The model the extractor uses unless told otherwise (None: it has no model option, or
    is not installed in this kernel)."""
    try:
        field = get_extractor_class(extractor).Options.model_fields.get("model")
    except ConfigError:
        return None
    return field.default if field is not None and isinstance(field.default, str) else None


def per_thousand(value: float | None, currency: str) -> str:
    if value is None:
        return "no price in the table"
    if value == 0:
        return "free"
    amount = f"{value:,.2f}" if value >= 1 else f"{value:.3f}"
    return f"about {amount} {currency} per 1,000 records"


def describe(server: Server, estimate: Estimate, prices: PriceTable) -> str:
    """The choice's words (HTML): one sentence for each way, then what the figures rest on."""
    now = per_thousand(estimate.now, estimate.currency)
    backlog = per_thousand(estimate.backlog, estimate.currency)
    lines = [
        f"<b>Read now</b>: each record is read as soon as the job reaches the server, at the "
        f"usual price ({now}); the records appear in the review queue within "
        "minutes.",
    ]
    if server.can_batch:
        lines.append(
            f"<b>Backlog</b>: read by Google's Batch API at half the price ({backlog}), "
            "within 24 hours (usually much sooner); the records appear in the "
            "review queue when they are back."
        )
    else:
        lines.append(
            f"<b>Backlog</b>: this server reads with <code>{html.escape(server.extractor)}"
            "</code>, which has no batch API, so backlog jobs run as usual on this server: "
            f"read now, at the usual price ({now})."
        )
    lines.append(
        f"<small>Prices of {html.escape(prices.date)} ({html.escape(prices.path.name)}), "
        f"{html.escape(estimate.basis)}.</small>"
    )
    return "<br>".join(lines)


class ModeChoice(widgets.VBox):
    """Read now or Backlog, above Send, with what each costs and how long it may take."""

    def __init__(self, prices: PriceTable | None = None) -> None:
        self.prices = prices or load_prices()
        self.server: Server | None = None
        self.estimate: Estimate | None = None
        self.toggle = widgets.ToggleButtons(
            options=MODES,
            value=JobMode.INTERACTIVE.value,
            description="Reading",
            style={"button_width": "110px", "description_width": "initial"},
        )
        self.toggle.add_class("sb-mode")
        self.note = widgets.HTML("<i>Sign in to see what reading costs on this server.</i>")
        self.note.add_class("sb-mode-note")
        super().__init__([self.toggle, self.note])

    @property
    def mode(self) -> str:
        return str(self.toggle.value)

    def load(self, client: Client) -> None:
        """Ask the server which extractor it reads with, and its recent jobs what they cost."""
        health = client.health()
        self.server = Server(str(health["extractor"]), bool(health.get("extractorCanBatch")))
        finished = [j for j in client.jobs(limit=20).jobs if j.status.finished][:PAST_JOBS]
        views = [client.job(j.job_id) for j in finished if j.completed_items]
        self.estimate = past_estimate(views, self.prices) or typical_estimate(
            self.server, self.prices
        )
        self.note.value = describe(self.server, self.estimate, self.prices)
