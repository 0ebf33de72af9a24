"""Multipart uploads streamed to disk as they are read, never held whole in memory.

Werkzeug hands each file part to `Request._get_file_stream`; ours writes it into a staging
folder under the jobs directory, counting bytes (413 past 10 MiB a file) and files (400 past
50) while reading. Only after the manifest and every image are valid do the staged files move
into the job's folder (a rename on the same filesystem); a refused request removes them."""

from __future__ import annotations

import hashlib
import io
import shutil
import uuid
from pathlib import Path
from typing import IO, Any

from flask import Request

from scanbatch.errors import BadRequest
from scanbatch.images import MAX_IMAGE_BYTES, SNIFF_BYTES, check_size, sniff_mime
from scanbatch.validation import MAX_IMAGES

# The whole request: 50 files of 10 MiB plus the manifest and multipart framing. A request
# declaring more is refused from its Content-Length alone, before any of it is read.
MAX_REQUEST_BYTES = MAX_IMAGES * MAX_IMAGE_BYTES + 1024 * 1024
STAGING_KEY = "scanbatch.staging"


class StagedFile(io.FileIO):
    def __init__(self, path: Path, index: int) -> None:
        super().__init__(path, "w+b")
        self.path = path
        self.index = index
        self.size = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: Any) -> int:
        self.size += len(data)
        check_size(self.size, index=self.index)  # 413 as soon as the file passes the limit
        self.sha256.update(data)
        return super().write(data)

    def mime_type(self) -> str:
        with open(self.path, "rb") as fh:
            return sniff_mime(fh.read(SNIFF_BYTES), index=self.index)


class Staging:
    """The files of one request, in arrival order, in a private temporary folder."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / f".incoming-{uuid.uuid4()}"
        self.files: list[StagedFile] = []

    def new_file(self) -> StagedFile:
        if len(self.files) >= MAX_IMAGES:
            raise BadRequest(f"Total images cannot exceed {MAX_IMAGES}")
        self.dir.mkdir(parents=True, exist_ok=True)
        staged = StagedFile(self.dir / f"{len(self.files):02d}", len(self.files))
        self.files.append(staged)
        return staged

    def cleanup(self) -> None:
        for f in self.files:
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class UploadRequest(Request):
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
