"""Photo retention: the photos of finished records nobody reviewed go once their job ended more
than some days ago; reviewed records (the golden set) keep theirs, and every reading, each
job's `results.jsonl` and notebook, and the store's rows stay. `prune` does it once
(`POST /admin/prune`, `scanbatch prune`); `PhotoPruner` is the server's thread that does it at
start and every PRUNE_EVERY seconds while SCANBATCH_KEEP_PHOTOS_DAYS is set.

The order makes a stop at any moment harmless: records are marked in the store first (from then
on their photos answer 410 and the review queue lists none), then their files are removed, then
the marks say so. A prune stopped between the steps leaves files on disk that nobody is served,
and the next prune removes them (`RetentionStore.unremoved`)."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from scanbatch.jobfolder import ItemFiles, JobFolder
from scanbatch.models import PruneSummary
from scanbatch.settings import Settings
from scanbatch.store import JobStore
from scanbatch.store.db import utcnow
from scanbatch.store.leases import ItemKey

log = logging.getLogger(__name__)

PRUNE_EVERY = 6 * 3600.0  # seconds between the server's prunes (SCANBATCH_KEEP_PHOTOS_DAYS)
# Records marked per write transaction: reviews and ingest wait for the write lock only that
# long, however many records a first prune of a whole library finds.
CHUNK = 1000


def reason(days: int) -> str:
    """Why a record's photos went, as the 410 and the review queue say it."""
    return f"older than {days} days, never reviewed"


def gone_message(at: datetime, why: str) -> str:
    """The 410 of a pruned record's photo."""
    return (
        f"The photos of this record were removed on {at:%Y-%m-%d} ({why}): its reading stays "
        "and it can still be reviewed; the station keeps the photos of records nobody reviewed "
        "only that long (reviewed records keep theirs)."
    )


def _by_job(keys: Sequence[ItemKey]) -> dict[str, list[int]]:
    jobs: dict[str, list[int]] = defaultdict(list)
    for job_id, item in keys:
        jobs[job_id].append(item)
    return jobs


class _Tally:
    def __init__(self) -> None:
        self.records = self.photos = self.thumbnails = self.bytes = 0
        self.jobs: set[str] = set()

    def add(self, job_id: str, files: ItemFiles) -> None:
        self.records += 1
        self.photos += len(files.photos)
        self.thumbnails += len(files.thumbnails)
        self.bytes += files.bytes
        self.jobs.add(job_id)


def _remove(
    store: JobStore, settings: Settings, keys: Sequence[ItemKey]
) -> dict[ItemKey, ItemFiles]:
    """Remove the files of records marked pruned, then record that they are gone."""
    removed = {}
    for job_id, items in _by_job(keys).items():
        folder = JobFolder.for_job(settings.jobs_dir, job_id)
        for item, files in folder.remove_item_files(items).items():
            removed[(job_id, item)] = files
    store.retention.removed(list(keys), utcnow())
    return removed


def prune(
    store: JobStore,
    settings: Settings,
    older_than_days: int,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    stop: threading.Event | None = None,
) -> PruneSummary:
    """Remove the photos and thumbnails of the finished, never reviewed records whose job
    ended more than `older_than_days` ago (with `dry_run`, only count them: the summary is the
    one a real prune would give). A record someone holds in review right now is left for the
    next prune. `stop` ends the prune between two chunks."""
    now = now or utcnow()
    cutoff = now - timedelta(days=older_than_days)
    if not dry_run:
        left = store.retention.unremoved()
        if left:
            log.info("photo retention: finishing %d record(s) a stopped prune left", len(left))
            _remove(store, settings, left)
    held = store.reviews.leases.held()
    keys = [k for k in store.retention.candidates(cutoff) if k not in held]
    tally = _Tally()
    for start in range(0, len(keys), CHUNK):
        if stop is not None and stop.is_set():
            break
        found: dict[ItemKey, ItemFiles] = {}
        for job_id, items in _by_job(keys[start : start + CHUNK]).items():
            folder = JobFolder.for_job(settings.jobs_dir, job_id)
            for item, files in folder.item_files(items).items():
                found[(job_id, item)] = files
        if dry_run:
            for (job_id, _), files in found.items():
                tally.add(job_id, files)
            continue
        sizes = {k: (len(f.photos), f.bytes) for k, f in found.items()}
        marked = store.retention.mark(sizes, cutoff, reason(older_than_days), now)
        for (job_id, _), files in _remove(store, settings, marked).items():
            tally.add(job_id, files)
    return PruneSummary(
        older_than_days=older_than_days,
        dry_run=dry_run,
        cutoff=cutoff,
        records=tally.records,
        photos=tally.photos,
        thumbnails=tally.thumbnails,
        bytes=tally.bytes,
        jobs=len(tally.jobs),
    )


class PhotoPruner:
    """The server's prunes: one at a time (the periodic one, `POST /admin/prune`), and while
    SCANBATCH_KEEP_PHOTOS_DAYS is set, a thread that prunes at start and every `every` seconds."""

    def __init__(self, store: JobStore, settings: Settings, every: float = PRUNE_EVERY) -> None:
        self.store = store
        self.settings = settings
        self.every = every
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self, older_than_days: int, *, dry_run: bool = False) -> PruneSummary:
        with self._lock:
            return prune(
                self.store, self.settings, older_than_days, dry_run=dry_run, stop=self._stopping
            )

    def start(self) -> None:
        if self.settings.keep_photos_days is None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the chunk under way (a prune stopped there is finished by the next)."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None

    def _loop(self) -> None:
        days = self.settings.keep_photos_days
        assert days is not None
        while not self._stopping.is_set():
            try:
                done = self.run(days)
                if done.records:
                    log.info(
                        "photo retention: removed the photos of %d record(s) of %d job(s), "
                        "%d bytes (%s)",
                        done.records,
                        done.jobs,
                        done.bytes,
                        reason(days),
                    )
            except Exception:
                log.exception(
                    "photo retention: the prune failed; it runs again in %.0f s", self.every
                )
            self._stopping.wait(self.every)
