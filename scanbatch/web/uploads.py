"""Multipart uploads streamed to disk as they are read, never held whole in memory.

Werkzeug hands each file part to `Request._get_file_stream`; ours writes it into a staging
folder under the jobs directory, counting bytes (413 past 10 MiB a file) and files (400 past
50) while reading. Only after the manifest and every image are valid do the staged files move
into the job's folder (a rename on the same filesystem); a refused request removes them."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from flask import Request, request
from werkzeug.exceptions import RequestEntityTooLarge

from scanbatch.audit import MAX_NOTE_CHARS, MAX_VALUE_CHARS
from scanbatch.diskspace import is_disk_full, write_fully
from scanbatch.errors import BadRequest, DiskFull, PayloadTooLarge
from scanbatch.images import MAX_IMAGE_BYTES, SNIFF_BYTES, check_pixels, check_size, sniff_mime
from scanbatch.validation import MAX_IMAGES

log = logging.getLogger(__name__)
R = TypeVar("R")

# The whole request: 50 files of 10 MiB plus the manifest and multipart framing. A request
# declaring more is refused from its Content-Length alone, before any of it is read.
MAX_REQUEST_BYTES = MAX_IMAGES * MAX_IMAGE_BYTES + 1024 * 1024
# Every other request's body is a small JSON document (a review, a key to create), parsed whole:
# the server refuses a larger declared one from its headers (scanbatch.web.serve), so it never
# spills to a temporary file (waitress keeps up to 512 KiB of a body in memory), and the app
# counts an undeclared (chunked) one as it reads (scanbatch.web.forms). The largest valid one
# is a review whose six fields and note are full of characters JSON may escape as a surrogate
# pair (12 bytes for one character), plus room for the keys and whitespace: 100,096 bytes.
MAX_JSON_BYTES = (6 * MAX_VALUE_CHARS + MAX_NOTE_CHARS) * 12 + 4096
# The routes that take multipart uploads (the only ones that stage files): their bodies may be
# up to MAX_REQUEST_BYTES, from a caller whose key may write.
UPLOAD_ROUTES = frozenset({("POST", "/library/scan/batch"), ("POST", "/library/scan")})
# A form field (the manifest, a context field) is held in memory: 10 items of context fit in
# a few KiB, so 256 KiB is generous and still bounded.
MAX_FORM_FIELD_BYTES = 256 * 1024
# Parts of one multipart body, files and fields together: 50 images, the manifest, and the
# single scan's few context fields fit with room to spare.
MAX_FORM_PARTS = 100
STAGING_KEY = "scanbatch.staging"
# Folders under the jobs directory that only live for one request; any found at start were
# left by a server that was killed mid-request. (`.scan-` folders were the single scan's, made
# by versions before it read its photos in memory: one may still be left by such a server.)
TRANSIENT_PREFIXES = (".incoming-", ".scan-")


def remove_abandoned_staging(jobs_dir: Path) -> list[str]:
    """Remove request-scoped folders left by a killed server (call it while holding the store,
    before serving: no request of this process can own them yet). Returns their names."""
    jobs_dir = Path(jobs_dir)
    if not jobs_dir.is_dir():
        return []
    removed = []
    for entry in jobs_dir.iterdir():
        if entry.is_dir() and entry.name.startswith(TRANSIENT_PREFIXES):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    if removed:
        log.info("removed %d abandoned upload folders: %s", len(removed), ", ".join(removed))
    return removed


class StagedFile(io.FileIO):
    def __init__(self, path: Path, index: int) -> None:
        super().__init__(path, "w+b")
        self.path = path
        self.index = index
        self.size = 0
        self.sha256 = hashlib.sha256()
        self._mime: str | None = None

    def write(self, data: Any) -> int:
        self.size += len(data)
        check_size(self.size, index=self.index)  # 413 as soon as the file passes the limit
        self.sha256.update(data)
        # Werkzeug ignores the count a write returns: a short write near a full disk would
        # keep a truncated photo. Written whole, or ENOSPC (a 507 from the route).
        return write_fully(super().write, data)

    def mime_type(self) -> str:
        """The real type from the bytes, after checking the declared pixels (400 naming the
        file for a non-image or a decompression bomb). Read once, here: the job folder records
        it (in the photo's name), and every later reader takes it from there."""
        if self._mime is None:
            with open(self.path, "rb") as fh:
                mime = sniff_mime(fh.read(SNIFF_BYTES), index=self.index)
            check_pixels(self.path, mime, index=self.index)
            self._mime = mime
        return self._mime

    def read_bytes(self) -> bytes:
        """The whole file, once it has been received."""
        return self.path.read_bytes()


class Staging:
    """The files of one request, in arrival order, in a private temporary folder."""

    def __init__(
        self,
        root: Path,
        max_files: int = MAX_IMAGES,
        too_many: str = f"Total images cannot exceed {MAX_IMAGES}",
    ) -> None:
        self.root = Path(root)
        self.dir = self.root / f"{TRANSIENT_PREFIXES[0]}{uuid.uuid4()}"
        self.files: list[StagedFile] = []
        self.max_files = max_files
        self.too_many = too_many

    def new_file(self) -> StagedFile:
        if len(self.files) >= self.max_files:
            raise BadRequest(self.too_many)
        self.dir.mkdir(parents=True, exist_ok=True)
        staged = StagedFile(self.dir / f"{len(self.files):02d}", len(self.files))
        self.files.append(staged)
        return staged

    def cleanup(self) -> None:
        for f in self.files:
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def uploads_disk_full(route: Callable[..., R]) -> Callable[..., R]:
    """An upload route whose disk fills: 507 naming the folder its photos were staged in.
    The route's own cleanup has run by then (its staging, a job folder being created), so
    nothing of the refused request is left."""

    @functools.wraps(route)
    def guarded(*args: Any, **kwargs: Any) -> R:
        try:
            return route(*args, **kwargs)
        except Exception as exc:
            staging = request.environ.get(STAGING_KEY)
            if staging is None or isinstance(exc, DiskFull) or not is_disk_full(exc):
                raise
            raise DiskFull(staging.root) from exc

    return guarded


class UploadRequest(Request):
    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except RequestEntityTooLarge as exc:
            raise PayloadTooLarge(self._too_large_message(exc)) from None

    def _too_large_message(self, exc: RequestEntityTooLarge) -> str:
        """Werkzeug raises the same 413 for three limits; say which one was hit."""
        limit = self.max_content_length
        if limit is not None and (self.content_length or 0) > limit:
            return request_too_large_message(limit)
        frame = exc.__traceback__
        while frame.tb_next is not None:
            frame = frame.tb_next
        if frame.tb_frame.f_code.co_name == "next_event":  # the decoder counts parts there
            return (
                f"Too many form parts: a request may have at most {MAX_FORM_PARTS} parts "
                f"(files and fields together; at most {MAX_IMAGES} images)"
            )
        return (
            f"A form field is over {MAX_FORM_FIELD_BYTES // 1024} KiB: the manifest and each "
            "other text field may be at most that (send photos as files in 'images')"
        )

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        staging = self.environ.get(STAGING_KEY)
        if staging is None:  # uploads only go to the batch endpoint
            raise BadRequest("This endpoint does not accept file uploads")
        return staging.new_file()


def request_too_large_message(limit: int) -> str:
    return (
        f"Request too large: the body may be at most {limit} bytes "
        f"({MAX_IMAGES} images of at most {MAX_IMAGE_BYTES // (1024 * 1024)} MiB each, plus "
        "1 MiB for the form fields)"
    )


def json_too_large_message(limit: int, size: str | None = None) -> str:
    """The one 413 of a JSON body, from its headers (no `size`) or while it is read."""
    what = f"The JSON body is {size}; a" if size else "Request too large: a"
    return (
        f"{what} JSON body may be at most {limit:,} bytes ({limit // 1024} KiB, the limit for "
        "JSON bodies): send only the fields the route takes (photos go to "
        "POST /library/scan/batch as multipart files)"
    )
