"""Running variants over a dataset: every (variant, repeat, item) is one task; each variant's
items run concurrently in its own pool (Gemini calls share the process-wide rate limit through
the extractor), all variants at once, with one progress bar. A failing item becomes that
item's error; it never stops the others or another variant."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from scanbatch.errors import BadRequest, ConfigError, ExtractionError
from scanbatch.experiments.cache import DiskCache, cache_key
from scanbatch.experiments.catalog import CatalogChoice, choose_catalog
from scanbatch.experiments.dataset import Dataset, DatasetItem, UnpackLimits, load_dataset
from scanbatch.experiments.records import (
    CACHE_DIR,
    RunRecord,
    RunWriter,
    load_run,
    utc_now,
)
from scanbatch.experiments.variants import (
    Variant,
    build_extractor,
    effective_options,
    read_variants,
    request_identity,
    validate_variants,
)
from scanbatch.extractors import Extractor
from scanbatch.models import Extraction
from scanbatch.settings import Settings, load_settings

log = logging.getLogger(__name__)

# Extractors whose work is local CPU: more threads than cores only queue (the OCR engine
# serialises its calls anyway) and would inflate each item's measured latency.
CPU_BOUND_EXTRACTORS = frozenset({"ocr"})


def experiments_dir(settings: Settings) -> Path:
    return settings.data_dir / "experiments"


@dataclass
class Prepared:
    variant: Variant
    extractor: Extractor | None
    reason: str | None  # why it cannot run here, one line
    identity: dict[str, Any] | None


def _prepare(variant: Variant, settings: Settings, catalog: CatalogChoice) -> Prepared:
    try:
        extractor = build_extractor(variant, settings, catalog.matcher)
    except ConfigError as exc:
        return Prepared(variant, None, exc.message, None)
    identity = request_identity(extractor)
    if extractor.reads_catalog:
        identity["catalog"] = catalog.sha256  # its answers depend on the catalog it reads
    return Prepared(variant, extractor, None, identity)


def _variant_meta(p: Prepared) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": p.variant.label,
        "spec": p.variant.model_dump(exclude_none=True),
        "extractor": p.variant.extractor,
        "runnable": p.extractor is not None,
        "reason": p.reason,
        "mode": p.variant.mode,
    }
    if p.extractor is not None:
        options = effective_options(p.extractor)
        meta.update(
            model=options.get("model"),
            promptVersion=options.get("prompt_version"),
            promptSha256=(p.identity or {}).get("promptSha256"),
            options=options,
        )
    return meta


def _run_item_safely(
    prepared: Prepared, item: DatasetItem, repeat: int, cache: DiskCache, matcher: Any
) -> dict[str, Any]:
    """`_run_item`, with anything it did not foresee (a matcher bug, a full disk for the
    cache) turned into this item's error: one record must never end the whole run."""
    try:
        return _run_item(prepared, item, repeat, cache, matcher)
    except Exception as exc:
        log.exception("experiment item %d of %s failed", item.index, prepared.variant.label)
        return {
            "variant": prepared.variant.label,
            "repeat": repeat,
            "itemIndex": item.index,
            "cached": False,
            "status": "failed",
            "errorMessage": f"{type(exc).__name__}: {exc}",
            "errorCode": "internal_error",
            "finishedAt": utc_now(),
        }


def item_cache_key(prepared: Prepared, item: DatasetItem, repeat: int) -> str:
    """The cache key of one (variant, repeat, item): its request's identity, not its mode."""
    return cache_key(
        {
            **(prepared.identity or {}),
            "photos": [[p.sha256, p.photo_type, p.mime_type] for p in item.photos],
            "context": item.context.model_dump(mode="json", by_alias=True, exclude_none=True)
            if item.context
            else None,
            "repeat": repeat,
        }
    )


def base_record(prepared: Prepared, item: DatasetItem, repeat: int, key: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "variant": prepared.variant.label,
        "repeat": repeat,
        "itemIndex": item.index,
        "cacheKey": key,
    }
    if prepared.variant.batch:
        record["billing"] = "batch"  # priced at the batch price, cached or not
    return record


def failed_record(record: dict[str, Any], code: str, message: str, **more: Any) -> dict[str, Any]:
    return {
        **record,
        "status": "failed",
        "errorMessage": message,
        "errorCode": code,
        **more,
        "finishedAt": utc_now(),
    }


def usage_of(extraction: Extraction) -> dict[str, Any]:
    """What the cache keeps of an answer's usage besides its fields."""
    u = extraction.usage
    return {
        "latencyMs": u.latency_ms if u and u.latency_ms is not None else None,
        "inputTokens": u.input_tokens if u else None,
        "outputTokens": u.output_tokens if u else None,
        "retries": u.retries if u else 0,
        "model": u.model if u else None,
    }


def cached_answer(cache: DiskCache, key: str) -> tuple[Extraction, dict[str, Any]] | None:
    hit = cache.get(key)
    if hit is None:
        return None
    return Extraction.model_validate(hit["extraction"]), hit.get("usage") or {}


def completed_record(
    record: dict[str, Any],
    item: DatasetItem,
    extraction: Extraction,
    usage: dict[str, Any],
    matcher: Any,
) -> dict[str, Any]:
    match = matcher.match(item.context, extraction) if matcher is not None else None
    matched = match is not None and match.album_id is not None
    return {
        **record,
        "status": "completed",
        "extraction": extraction.fields_json(),
        "matchedAlbumId": match.album_id if matched else None,
        "matchScore": match.score if matched else None,
        # The model's latency and tokens, also when the cache answered: they describe the
        # variant, and `cached` says this run did not pay for them.
        "latencyMs": usage.get("latencyMs"),
        "inputTokens": usage.get("inputTokens"),
        "outputTokens": usage.get("outputTokens"),
        "retries": usage.get("retries", 0),
        "finishedAt": utc_now(),
    }


def _run_item(
    prepared: Prepared,
    item: DatasetItem,
    repeat: int,
    cache: DiskCache,
    matcher: Any,
) -> dict[str, Any]:
    extractor = prepared.extractor
    assert extractor is not None
    key = item_cache_key(prepared, item, repeat)
    record = base_record(prepared, item, repeat, key)
    hit = cached_answer(cache, key)
    started = time.perf_counter()
    if hit is not None:
        extraction, usage = hit
        record["cached"] = True
    else:
        record["cached"] = False
        try:
            photos = [p.load() for p in item.photos]
            extraction = extractor.extract(photos, item.context)
        except ExtractionError as exc:
            return failed_record(record, exc.code, exc.message, latencyMs=_since(started))
        except Exception as exc:  # one named failure path: this item fails, the run goes on
            log.exception("experiment item %d of %s failed", item.index, prepared.variant.label)
            return failed_record(
                record, "internal_error", f"{type(exc).__name__}: {exc}", latencyMs=_since(started)
            )
        usage = usage_of(extraction)
        if usage["latencyMs"] is None:
            usage["latencyMs"] = _since(started)
        cache.put(key, {"extraction": extraction.fields_json(), "usage": usage})
    return completed_record(record, item, extraction, usage, matcher)


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def run_experiment(
    dataset: str | Path | Dataset,
    variants: str | Path | Sequence[Any] | None = None,
    *,
    settings: Settings | None = None,
    repeat: int = 1,
    name: str | None = None,
    catalog: str | Path | None = None,
    concurrency: int | None = None,
    progress: bool = True,
    on_notice: Callable[[str], None] = print,
    poll_seconds: float | None = None,
) -> RunRecord:
    """Run `variants` over `dataset` and record it under `<data_dir>/experiments/<run>/`.

    Every variant is validated first (a BadRequest before anything runs). A variant that cannot
    run here (e.g. Gemini without GEMINI_API_KEY) is reported through `on_notice` in one line
    and recorded as not runnable; the others run. A variant with `"mode": "batch"` sends its
    records through its extractor's batch API (`scanbatch.experiments.batch`), asking how the
    batch stands every `poll_seconds` at first (None: SCANBATCH_BACKLOG_POLL_SECONDS)."""
    settings = settings or load_settings()
    if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= 20:
        raise BadRequest(f"repeat must be a whole number from 1 to 20, got {repeat!r}")
    chosen = validate_variants(read_variants(variants), settings)
    root = experiments_dir(settings)
    writer = RunWriter(root, name)
    try:
        # A zip is unpacked inside this run's own folder: private to the run, kept with its
        # record (the report's photos come from it), removed with it.
        ds = (
            dataset
            if isinstance(dataset, Dataset)
            else load_dataset(dataset, unpack_into=writer.path, limits=UnpackLimits.of(settings))
        )
        catalog_choice = choose_catalog(settings, catalog, ds.meta)
    except BaseException:
        writer.discard()
        raise
    prepared = [_prepare(v, settings, catalog_choice) for v in chosen]
    for p in prepared:
        if p.reason:
            on_notice(f"variant {p.variant.label}: not runnable here: {p.reason}")
    cache = DiskCache(root / CACHE_DIR)
    meta: dict[str, Any] = {
        "run": writer.path.name,
        "createdAt": utc_now(),
        "finishedAt": None,
        "dataset": {"path": str(ds.path), "fingerprint": ds.fingerprint, "items": len(ds.items)},
        "catalog": catalog_choice.describe(),
        "repeat": repeat,
        "variants": [_variant_meta(p) for p in prepared],
    }
    writer.write_meta(meta)
    # The truth and photo names travel with the run, so it can be compared again later even
    # if the dataset folder moves (the thumbnails then go missing, the figures do not).
    writer.write_truth(
        [{**item.truth, "photos": [p.path.name for p in item.photos]} for item in ds.items]
    )
    runnable = [p for p in prepared if p.extractor is not None]
    total = len(runnable) * repeat * len(ds.items)
    width = concurrency or settings.item_concurrency
    counts = {"records": 0, "failed": 0, "cacheHits": 0}
    started = time.perf_counter()
    bar = _progress_bar(total, progress)
    done: queue.Queue[dict[str, Any]] = queue.Queue()
    stop = threading.Event()  # set when the run is interrupted: a batch stops waiting
    pools = [
        ThreadPoolExecutor(
            max_workers=1 if p.variant.batch else _workers(p.variant, width),
            thread_name_prefix=f"exp-{i}",
        )
        for i, p in enumerate(runnable)
    ]
    try:
        for pool, p in zip(pools, runnable, strict=True):
            if p.variant.batch:
                from scanbatch.experiments.batch import BatchVariantRun

                position = prepared.index(p)
                batch = BatchVariantRun(
                    p,
                    ds.items,
                    repeat,
                    cache=cache,
                    matcher=catalog_choice.matcher,
                    folder=writer.path,
                    run=writer.path.name,
                    position=position,
                    poll_seconds=poll_seconds or settings.backlog_poll_seconds,
                    on_notice=on_notice,
                    stop=stop,
                    meta=meta["variants"][position],
                )
                pool.submit(batch.run, done.put)
                continue
            for r in range(repeat):
                for item in ds.items:
                    future = pool.submit(
                        _run_item_safely, p, item, r, cache, catalog_choice.matcher
                    )
                    future.add_done_callback(partial(_deliver, done))
        for _ in range(total):
            record = done.get()
            writer.append(record)
            counts["records"] += 1
            counts["failed"] += record["status"] == "failed"
            counts["cacheHits"] += bool(record.get("cached"))
            if bar is not None:
                bar.update(1)
    finally:
        stop.set()
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
        writer.close()
        for p in runnable:
            close = getattr(p.extractor, "close", None)
            if callable(close):
                close()
    meta["finishedAt"] = utc_now()
    meta["seconds"] = round(time.perf_counter() - started, 3)
    meta["counts"] = counts
    writer.write_meta(meta)
    return load_run(root, writer.path)


def _deliver(done: queue.Queue[dict[str, Any]], future: Future[dict[str, Any]]) -> None:
    if not future.cancelled():  # an interrupted run cancels the items not yet started
        done.put(future.result())  # never raises: `_run_item_safely` catches everything


def _workers(variant: Variant, width: int) -> int:
    if variant.concurrency:
        return variant.concurrency
    if variant.extractor in CPU_BOUND_EXTRACTORS:
        return max(1, min(width, os.cpu_count() or 1))
    return max(1, width)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    # tqdm.auto: a widget in a notebook kernel, text on a terminal.
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="experiment", unit="item")
