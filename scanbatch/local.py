"""Processing a batch in this process (the `scanbatch run` command): no server, no notebook.
The server runs the same pipeline inside a papermill kernel instead."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scanbatch.catalog import load_matcher
from scanbatch.catalog_sync import CatalogSnapshot
from scanbatch.extractors import create_extractor
from scanbatch.jobfolder import JobFolder
from scanbatch.models import ItemOutcome, JobView
from scanbatch.pipeline import process_folder
from scanbatch.settings import Settings
from scanbatch.store import JobStore
from scanbatch.submit import create_job_from_files

LOCAL_USER = "local"


def run_batch(
    store: JobStore,
    settings: Settings,
    manifest_text: str,
    image_paths: list[Path],
    *,
    extractor_name: str | None = None,
    user_id: str = LOCAL_USER,
    on_item: Callable[[ItemOutcome], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> JobView:
    """Validate, create the job, extract every item and finish the job; returns its view."""
    name = extractor_name or settings.extractor
    extractor = create_extractor(name, settings)  # a missing key fails here, before any work
    job_id, manifest = create_job_from_files(
        store, settings.jobs_dir, user_id, manifest_text, image_paths, extractor=name
    )
    store.mark_processing(job_id)
    if on_start is not None:
        on_start(len(manifest.items))

    def record(outcome: ItemOutcome) -> None:
        store.record_outcomes(job_id, [outcome])
        if on_item is not None:
            on_item(outcome)

    snapshot = CatalogSnapshot(store, settings.catalog_snapshot).ensure()
    process_folder(
        JobFolder.for_job(settings.jobs_dir, job_id),
        extractor,
        matcher=load_matcher(snapshot, settings.match_min_score) if snapshot else None,
        concurrency=settings.item_concurrency,
        on_item=record,
    )
    store.finish_job(job_id)
    return store.get_job(job_id)
