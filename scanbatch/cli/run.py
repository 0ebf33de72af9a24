"""`scanbatch run`: process a batch locally and print its status JSON. The click command only
wraps the options; `_run` does the work (`runner.create_local_job`, then `process_local_job`:
the processing notebook, as the server runs it; with --backlog, `runner.wait_for_backlog`
between the two).

A manifest of more than one batch (a dataset: `scanbatch synth --items 50`, a golden-set
export) is run as several jobs of at most one batch each (10 records, 50 photos), split by the
workbench's rule (`validation.batch_slices`), one after another, each exactly as the server
runs a job."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from scanbatch import private
from scanbatch.cli import finish, settings
from scanbatch.errors import BadRequest
from scanbatch.extractors import extractor_names
from scanbatch.models import DatasetManifest, ItemOutcome, JobMode, JobView
from scanbatch.runner import create_local_job, process_local_job, wait_for_backlog
from scanbatch.settings import Settings
from scanbatch.store import JobStore
from scanbatch.validation import batch_slices, parse_local_manifest, parse_manifest


@click.command("run")
@click.option(
    "--manifest",
    required=True,
    type=click.Path(path_type=Path),
    help="Manifest JSON ({items:[...]} or [...]).",
)
@click.option(
    "--extractor",
    callback=lambda ctx, param, value: _known_extractor(value),
    help="Backend: gemini, ocr or one a plugin registers (default: SCANBATCH_EXTRACTOR, else "
    "gemini with GEMINI_API_KEY, else ocr).",
)
@click.option(
    "--backlog",
    is_flag=True,
    help="Send every record in one Google batch (Gemini's Batch API: half the price, "
    "answered within 24 h) and wait for it here; an extractor that cannot batch (ocr) runs "
    "as usual.",
)
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
def command(manifest: Path, extractor: str | None, backlog: bool, images: tuple[Path, ...]) -> None:
    """Process a batch locally (no server) and print its status JSON.

    Validates the manifest, extracts every item with the chosen extractor, matches it against
    the catalog, and prints the job in the API's shape on stdout. Progress goes to stderr.
    IMAGES are given in manifest order. More than 10 records (a dataset) run as several jobs
    of at most 10 records and 50 photos; then it prints {totalItems, completedItems,
    failedItems, status, jobs: [{firstItem, ...each job}]}, which `scanbatch eval` reads.
    With --backlog, an interrupted run leaves its jobs in the data folder, and `scanbatch
    serve` on that folder finishes them.
    """
    mode = JobMode.BACKLOG if backlog else JobMode.INTERACTIVE
    finish(_run(manifest, extractor, list(images), settings(), mode))


def _known_extractor(name: str | None) -> str | None:
    if name is None:
        return None
    if name not in extractor_names():
        raise click.BadParameter(f"'{name}' is not one of {', '.join(extractor_names())}")
    return name


@dataclass(frozen=True)
class _Job:
    first_item: int  # the dataset's index of the job's item 0
    manifest: str
    images: list[Path]
    first_image: int  # the index of its first photo among IMAGES, for messages


def _run(
    manifest: Path,
    extractor: str | None,
    images: list[Path],
    settings: Settings,
    mode: JobMode = JobMode.INTERACTIVE,
) -> int:
    for path in [manifest, *images]:
        if not path.is_file():
            print(f"scanbatch run: error: no such file: {path}", file=sys.stderr)
            return 2
    text = manifest.read_text()
    plan = parse_local_manifest(text, len(images))
    _check_order(plan, images)
    jobs = _split(plan, images)
    if len(jobs) > 1:
        _check_jobs(jobs, extractor, settings)
    private.claim(settings.data_dir)  # the job folders and the kernels' files, as the server's
    store = JobStore.open(settings.store_path)
    views: list[tuple[int, JobView]] = []
    try:
        # Every job is created before the first runs: a backlog's records then share a batch.
        created = [
            create_local_job(
                store,
                settings,
                # One job: the manifest as given, exactly as before.
                text if len(jobs) == 1 else job.manifest,
                job.images,
                extractor_name=extractor,
                mode=mode,
            )[0]
            for job in jobs
        ]
        wait_for_backlog(store, settings, created, _BacklogProgress())
        with tqdm(total=len(plan.items), desc="items", unit="item", file=sys.stderr) as bar:
            for job, job_id in zip(jobs, created, strict=True):

                def progress(outcome: ItemOutcome, first: int = job.first_item) -> None:
                    bar.update(1)
                    bar.set_postfix_str(
                        f"item {first + outcome.item_index}: {outcome.status.value}"
                    )

                views.append((job.first_item, process_local_job(store, settings, job_id, progress)))
    finally:
        store.close()
    if len(views) == 1:
        view = views[0][1]
        print(json.dumps(view.to_json_dict(), indent=2))
        return 0 if view.status == "completed" else 1
    doc = _several(views)
    print(json.dumps(doc, indent=2))
    return 0 if doc["status"] == "completed" else 1


class _BacklogProgress:
    """One stderr line each time a backlog job's state changes (a Google batch can take
    hours: a line per look would flood the terminal)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple] = {}

    def __call__(self, view: JobView) -> None:
        backlog = view.backlog
        if backlog is None:
            return
        now = (backlog.state, backlog.batch)
        if self.seen.get(view.job_id) == now:
            return
        self.seen[view.job_id] = now
        where = f" in Google batch {backlog.batch}" if backlog.batch else ""
        print(f"backlog: job {view.job_id}: {backlog.state.value}{where}", file=sys.stderr)


def _split(plan: DatasetManifest, images: list[Path]) -> list[_Job]:
    jobs, starts = [], [0]
    for item in plan.items:
        starts.append(starts[-1] + item.image_count)
    for part in batch_slices([item.image_count for item in plan.items]):
        items = [
            item.model_dump(mode="json", by_alias=True, exclude_none=True)
            for item in plan.items[part.start : part.stop]
        ]
        first, last = starts[part.start], starts[part.stop]
        jobs.append(_Job(part.start, json.dumps({"items": items}), images[first:last], first))
    return jobs


def _check_jobs(jobs: list[_Job], extractor: str | None, settings: Settings) -> None:
    """Every job's manifest and photos, checked as the server checks an upload, before the
    first job runs: a bad photo in the last job must not be found after the others ran."""
    from scanbatch.extractors.base import check_extractor
    from scanbatch.submit import read_images

    check_extractor(extractor or settings.extractor, settings)
    for n, job in enumerate(jobs):
        try:
            parse_manifest(job.manifest, len(job.images))
        except BadRequest as exc:
            raise BadRequest(
                f"job {n + 1} of {len(jobs)} (records from {job.first_item}): {exc.message}"
            ) from None
        read_images(job.images, first_index=job.first_image)


def _check_order(plan: DatasetManifest, images: list[Path]) -> None:
    """Photos named by record (`item07_1_back_cover.jpg`, as synth and the export name them)
    must come in the manifest's order. A shell glob sorts `item100_0` before `item10_0`, which
    would give records each other's photos without a word."""
    from scanbatch.workbench.grouping import named_place

    places = [named_place(p.name) for p in images]
    if any(place is None for place in places):
        return  # not all named: the order given is the only order there is
    pos, previous = 0, None
    for index, item in enumerate(plan.items):
        group = places[pos : pos + item.image_count]
        records = {record for record, _ in group}  # type: ignore[misc]
        positions = [position for _, position in group]  # type: ignore[misc]
        record = min(records)
        if (
            len(records) != 1
            or positions != sorted(positions)
            or (previous is not None and record <= previous)
        ):
            names = ", ".join(p.name for p in images[pos : pos + item.image_count])
            raise BadRequest(
                f"IMAGES are not in the manifest's order: item {index} would get {names}; give "
                "the photos in record order (e.g. `$(ls -v DIR/item*)`: a shell glob sorts "
                "item100 before item10)"
            )
        previous, pos = record, pos + item.image_count


def _several(views: list[tuple[int, JobView]]) -> dict[str, Any]:
    jobs = [{"firstItem": first, **view.to_json_dict()} for first, view in views]
    completed = sum(view.completed_items for _, view in views)
    return {
        "totalItems": sum(view.total_items for _, view in views),
        "completedItems": completed,
        "failedItems": sum(view.failed_items for _, view in views),
        # The station's rule for one job, over the whole set: completed when any item was.
        "status": "completed" if completed else "failed",
        "jobs": jobs,
    }
