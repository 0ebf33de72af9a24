"""What the data folder holds, part by part (`GET /admin/usage`, `scanbatch usage`).

One walk with `os.scandir`, reading sizes from the directory entries' `stat`, never a file's
bytes: a station's folder holds hundreds of thousands of photos. Sizes are the files' lengths
(what a backup copies), not the blocks they take."""

from __future__ import annotations

import os
import shutil

from pydantic import Field, create_model

from scanbatch.jobfolder import EXECUTED_NOTEBOOK, IMAGES, THUMBNAILS
from scanbatch.models import CamelModel, JobCounts
from scanbatch.settings import Settings
from scanbatch.store import JobStore
from scanbatch.warm_pool import WARM_LOG

EXPERIMENTS = "experiments"
BACKLOG = "backlog"


class UsagePart(CamelModel):
    bytes: int
    files: int


# The parts of the data folder `GET /admin/usage` reports, and what each holds; they add up to
# the whole folder.
USAGE_PARTS = {
    "store": "the DuckDB file and its write-ahead log",
    "photos": "the records' photos, in the job folders",
    THUMBNAILS: "thumbnails made for reviews",  # named as their folder
    "notebooks": "each job's executed notebook",
    "job_files": "the rest of the job folders: manifests, results.jsonl, notebook logs",
    "experiments": "data/experiments: runs and their cache",
    "backlog": "data/backlog: the Batch API's input files",
    "logs": "server.log and warm_kernels.log, with rotated copies",
    "other": "everything else (catalog snapshot, runtime files)",
}
UsageParts = create_model(  # type: ignore[call-overload]
    "UsageParts",
    __base__=CamelModel,
    __doc__="The data folder, part by part; the parts add up to the whole folder.",
    **{name: (UsagePart, Field(description=text)) for name, text in USAGE_PARTS.items()},
)


class UsageReport(CamelModel):
    """`GET /admin/usage`: what the data folder holds, and how much room is left."""

    data_dir: str
    total_bytes: int = Field(description="the parts summed")
    parts: UsageParts  # type: ignore[valid-type]
    disk_free_bytes: int = Field(description="free on the filesystem holding the data folder")
    disk_total_bytes: int = Field(description="the size of that filesystem")
    jobs: JobCounts  # type: ignore[valid-type]
    records: int
    reviewed_records: int
    pruned_records: int = Field(description="records whose photos the retention removed")
    keep_photos_days: int | None = Field(
        description="SCANBATCH_KEEP_PHOTOS_DAYS; null: photos are kept forever"
    )


# The logs in the data folder, rotated copies too: the server's (as the launcher writes it,
# scanbatch.workbench.local_server, not imported: it would load the widgets) and the kernels'.
LOG_PREFIXES = ("server.log", WARM_LOG)


class _Sizes:
    def __init__(self) -> None:
        self.parts = {name: [0, 0] for name in UsageParts.model_fields}

    def add(self, part: str, size: int, files: int = 1) -> None:
        self.parts[part][0] += size
        self.parts[part][1] += files

    def tree(self, part: str, path: str) -> None:
        """Every file under `path` counts to `part`."""
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        for entry in entries:
            self.entry(part, entry)

    def entry(self, part: str, entry: os.DirEntry[str]) -> None:
        try:
            if entry.is_dir(follow_symlinks=False):
                self.tree(part, entry.path)
            else:
                self.add(part, entry.stat(follow_symlinks=False).st_size)
        except FileNotFoundError:  # removed while we walked (a prune, a finished upload)
            pass


# A job folder's subfolders and the parts they count to (the thumbnails part is named as its
# folder: the folder's name is spelled in scanbatch.jobfolder only).
_JOB_FOLDERS = {IMAGES: "photos", THUMBNAILS: THUMBNAILS}


def _job_part(name: str) -> str:
    return "notebooks" if name == EXECUTED_NOTEBOOK else "job_files"


def _top_part(name: str, store_name: str) -> str:
    if name in (store_name, store_name + ".wal"):
        return "store"
    if name.startswith(LOG_PREFIXES):
        return "logs"
    return {EXPERIMENTS: "experiments", BACKLOG: "backlog"}.get(name, "other")


def disk_parts(settings: Settings) -> UsageParts:
    """The bytes and files of each part of the data folder; they add up to the whole folder."""
    sizes = _Sizes()
    try:
        top = list(os.scandir(settings.data_dir))
    except FileNotFoundError:
        top = []
    for entry in top:
        if entry.path == str(settings.jobs_dir) and entry.is_dir(follow_symlinks=False):
            _jobs(sizes, entry.path)
        else:
            sizes.entry(_top_part(entry.name, settings.store_path.name), entry)
    return UsageParts(**{name: UsagePart(bytes=b, files=n) for name, (b, n) in sizes.parts.items()})


def _jobs(sizes: _Sizes, jobs_dir: str) -> None:
    for job in os.scandir(jobs_dir):
        if not job.is_dir(follow_symlinks=False):
            sizes.entry("job_files", job)
            continue
        try:
            entries = list(os.scandir(job.path))
        except FileNotFoundError:  # deleted while we walked
            continue
        for entry in entries:
            folder_part = _JOB_FOLDERS.get(entry.name)
            if folder_part is not None:
                sizes.tree(folder_part, entry.path)
            else:
                sizes.entry(_job_part(entry.name), entry)


def usage(store: JobStore, settings: Settings) -> UsageReport:
    """The data folder's parts, the disk's room and the store's counts."""
    parts = disk_parts(settings)
    disk = shutil.disk_usage(settings.data_dir)
    return UsageReport(
        data_dir=str(settings.data_dir),
        total_bytes=sum(getattr(parts, name).bytes for name in UsageParts.model_fields),
        parts=parts,
        disk_free_bytes=disk.free,
        disk_total_bytes=disk.total,
        keep_photos_days=settings.keep_photos_days,
        **store.retention.counts(),
    )


def human_bytes(n: int) -> str:
    """`n` bytes for a person: B, kB, MB, GB, TB (powers of 1000, as disks are sold)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
