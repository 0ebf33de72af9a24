"""Creating a job: its folder (manifest + images) and its rows, all or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from scanbatch.images import check_pixels, check_size, sniff_mime
from scanbatch.jobfolder import JobFolder
from scanbatch.models import JobMode, Manifest
from scanbatch.store import JobStore
from scanbatch.store.webhooks import Callback
from scanbatch.validation import parse_manifest


def create_job(
    store: JobStore,
    jobs_dir: Path,
    user_id: str,
    manifest: Manifest,
    write_images: Callable[[JobFolder], None],
    *,
    extractor: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    mode: JobMode = JobMode.INTERACTIVE,
    callback: Callback | None = None,
) -> str:
    """Write the folder first (`write_images` stores the photos, streaming if it likes), then
    the rows. Any failure removes the folder, so a refused request leaves nothing behind; a
    folder is only ever resumed when its rows exist."""
    folder = JobFolder.for_job(jobs_dir, str(uuid.uuid4()))
    try:
        folder.create(manifest)
        write_images(folder)
        store.create_job(
            user_id,
            manifest,
            job_id=folder.job_id,
            extractor=extractor,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            mode=mode,
            batched=mode == JobMode.BACKLOG and can_batch(extractor),
            callback=callback,
        )
    except BaseException:
        folder.remove()
        raise
    return folder.job_id


def can_batch(extractor: str | None) -> bool:
    """Whether records read by `extractor` can wait for a batch API (the backlog)."""
    from scanbatch.extractors import get_extractor_class

    return extractor is not None and get_extractor_class(extractor).can_batch


def write_blobs(
    images: list[bytes], manifest: Manifest, mime_types: list[str] | None = None
) -> Callable[[JobFolder], None]:
    """A `write_images` for photos already in memory, in manifest order. `mime_types`, when
    given, are the types their bytes were found to be when they were checked (the folder
    records them); without them, the folder reads them."""
    types = mime_types or [None] * len(images)

    def write(folder: JobFolder) -> None:
        photos = zip(images, types, strict=True)
        for index, item in enumerate(manifest.items):
            for position in range(item.image_count):
                data, mime = next(photos)
                folder.write_image(index, position, data, mime)

    return write


def read_images(paths: list[Path], first_index: int = 0) -> list[tuple[bytes, str]]:
    """Photos from disk as (bytes, MIME type read from them), with the same size, type and
    pixel checks as an upload; messages number them from `first_index` (a part of a longer
    list)."""
    photos = []
    for index, path in enumerate(paths, start=first_index):
        data = Path(path).read_bytes()
        check_size(len(data), index=index)
        mime = sniff_mime(data, index=index)
        check_pixels(Path(path), mime, index=index)
        photos.append((data, mime))
    return photos


def create_job_from_files(
    store: JobStore,
    jobs_dir: Path,
    user_id: str,
    manifest_text: str,
    image_paths: list[Path],
    *,
    extractor: str | None = None,
    mode: JobMode = JobMode.INTERACTIVE,
) -> tuple[str, Manifest]:
    """A job from a manifest and photos on disk (the CLI and the server's demo), validated
    exactly like an HTTP upload."""
    manifest = parse_manifest(manifest_text, len(image_paths))
    photos = read_images(image_paths)
    write = write_blobs([data for data, _ in photos], manifest, [mime for _, mime in photos])
    job_id = create_job(store, jobs_dir, user_id, manifest, write, extractor=extractor, mode=mode)
    return job_id, manifest
