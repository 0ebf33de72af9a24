"""Google's Files and Batch APIs, through the google-genai SDK, as the backlog needs them.

As thin as it can be: the SDK does the HTTP (auth, URLs, the resumable upload, the streamed
download). What this module adds:

- no retries inside the SDK (`HttpRetryOptions(attempts=1)`): the backlog's poller decides
  when to try again, from `GoogleBatchError.retryable`;
- every SDK or transport error becomes a `GoogleBatchError` saying what failed and what to
  check;
- `get` and `list` are read as the REST JSON (through the SDK's own API client), because the
  SDK's `BatchJob` drops the Operation's `error` for the Developer API (`_BatchJob_from_mldev`
  keeps only `metadata.*`), and a FAILED batch's reason is worth showing;
- Google's states, in either spelling (`BATCH_STATE_*` as sent, `JOB_STATE_*` as the SDK
  renames them, with Vertex's extras), map onto the six `BatchState`s; an unknown one is
  logged and treated as still running.

The REST shapes are described in scanbatch/testing/fake_batch.py."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from scanbatch.errors import GoogleBatchError
from scanbatch.extractors.gemini import (
    API_KEY_ENV,
    DEFAULT_BASE_URL,
    TRANSPORT_ERRORS,
    api_key_from_env,
)

log = logging.getLogger(__name__)

# Google documents the Files and Batch APIs under v1beta; the SDK's default for the Developer
# API (3.6.1) is v1.
API_VERSION = "v1beta"
# Google's own example sets this MIME type for batch input files.
INPUT_MIME_TYPE = "jsonl"
LIST_PAGE_SIZE = 100
_LONG_AGO = datetime.min.replace(tzinfo=UTC)


class BatchState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (BatchState.PENDING, BatchState.RUNNING)


# Keyed by the state's name without its prefix: Google sends BATCH_STATE_*, the SDK's JobState
# says JOB_STATE_* and has Vertex's states too.
_STATES = {
    "UNSPECIFIED": BatchState.PENDING,
    "QUEUED": BatchState.PENDING,
    "PENDING": BatchState.PENDING,
    "PAUSED": BatchState.PENDING,  # stopped, may be resumed: not over
    "RUNNING": BatchState.RUNNING,
    "UPDATING": BatchState.RUNNING,
    "CANCELLING": BatchState.RUNNING,  # may still end SUCCEEDED, FAILED or CANCELLED
    "SUCCEEDED": BatchState.SUCCEEDED,
    "PARTIALLY_SUCCEEDED": BatchState.SUCCEEDED,  # the result file says which lines failed
    "FAILED": BatchState.FAILED,
    "EXPIRED": BatchState.EXPIRED,
    "CANCELLED": BatchState.CANCELLED,
}


def batch_state(raw: object) -> BatchState:
    """Google's state (a string or the SDK's JobState) as a BatchState."""
    text = str(getattr(raw, "value", raw) or "UNSPECIFIED")
    state = _STATES.get(text.removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_"))
    if state is None:
        log.warning("Google reported batch state %r, unknown here: treated as running", text)
        return BatchState.RUNNING
    return state


@dataclass(frozen=True)
class RemoteBatch:
    name: str  # "batches/abc123"
    display_name: str
    state: BatchState
    # Google's message for a FAILED or EXPIRED batch (or a CANCELLED one, when it gives one).
    error: str | None
    # "files/..." once SUCCEEDED; also for a CANCELLED batch that answered some lines.
    result_file: str | None
    created_at: datetime | None
    updated_at: datetime | None


def end_reason(state: BatchState, error: str | None) -> str:
    """How a batch that gave no results ended, in words: "<batch> expired: ..."."""
    return {
        BatchState.FAILED: f"failed at Google ({error or 'no reason given'})",
        BatchState.EXPIRED: "expired: Google did not run it within 24 hours",
        BatchState.CANCELLED: "was cancelled at Google",
    }.get(state, state.value)


@dataclass(frozen=True)
class ResultLine:
    key: str  # exactly as sent, "<jobId>/<itemIndex>"
    response: dict[str, Any] | None  # the GenerateContentResponse JSON (REST camelCase)
    error: dict[str, Any] | None  # {"code": int, "message": str, "status": str}

    @property
    def error_code(self) -> object:
        return (self.error or {}).get("code")

    @property
    def error_detail(self) -> str:
        """Google's code, status and message of a line's error, as one phrase."""
        error = self.error or {}
        return " ".join(
            str(x) for x in (error.get("code"), error.get("status"), error.get("message")) if x
        )

    @property
    def error_message(self) -> str:
        """What a record answered by this line's error says."""
        return (
            f"Google's Batch API could not answer this record ({self.error_detail or 'no detail'})"
        )


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime) or value is None:
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _from_operation(op: dict[str, Any]) -> RemoteBatch:
    """A batch from the REST Operation that get and list answer."""
    meta = op.get("metadata") or {}
    state = batch_state(meta.get("state"))
    output = meta.get("output") or op.get("response") or {}
    error = op.get("error") if isinstance(op.get("error"), dict) else None
    message = (error or {}).get("message")
    if message is None and state in (BatchState.FAILED, BatchState.EXPIRED):
        message = f"Google reports the batch {state.value} and gives no reason"
    return RemoteBatch(
        name=str(op.get("name") or meta.get("name") or ""),
        display_name=str(meta.get("displayName") or ""),
        state=state,
        error=message,
        result_file=output.get("responsesFile"),
        created_at=_time(meta.get("createTime")),
        updated_at=_time(meta.get("updateTime")),
    )


def _from_job(job: types.BatchJob) -> RemoteBatch:
    """A batch from the SDK's BatchJob that create answers."""
    return RemoteBatch(
        name=job.name or "",
        display_name=job.display_name or "",
        state=batch_state(job.state),
        error=job.error.message if job.error else None,
        result_file=job.dest.file_name if job.dest else None,
        created_at=job.create_time,
        updated_at=job.update_time,
    )


def _batch_id(name: str) -> str:
    batch_id = name.removeprefix("batches/")
    if not batch_id or "/" in batch_id or not name.startswith("batches/"):
        raise GoogleBatchError(f"'{name}' is not a batch name: expected 'batches/<id>'")
    return batch_id


class GoogleBatches:
    """One SDK client. Every method raises GoogleBatchError (and nothing else) on failure."""

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or DEFAULT_BASE_URL
        self._client = genai.Client(
            vertexai=False,
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,  # None: the SDK falls back to GOOGLE_GEMINI_BASE_URL
                api_version=API_VERSION,
                timeout=max(1, math.ceil(timeout * 1000)),  # the SDK takes milliseconds
                retry_options=types.HttpRetryOptions(attempts=1),  # the caller retries
            ),
        )

    @classmethod
    def from_env(cls, base_url: str | None = None) -> GoogleBatches:
        """The key from GEMINI_API_KEY, as the gemini extractor reads it."""
        return cls(api_key=api_key_from_env(), base_url=base_url)

    def upload(self, path: Path, display_name: str) -> str:
        """Uploads a JSONL input file (the SDK sends it in 8 MiB chunks): its "files/..."."""
        with self._errors(f"upload {path.name}"):
            file = self._client.files.upload(
                file=path, config={"display_name": display_name, "mime_type": INPUT_MIME_TYPE}
            )
        if not file.name:
            raise GoogleBatchError(f"Google answered the upload of {path.name} without a name")
        return file.name

    def create(self, model: str, file_name: str, display_name: str) -> RemoteBatch:
        with self._errors(f"create batch '{display_name}' of {file_name} with model '{model}'"):
            job = self._client.batches.create(
                model=model, src=file_name, config={"display_name": display_name}
            )
        return _from_job(job)

    def find(self, display_name: str) -> RemoteBatch | None:
        """The batch of that display name, paging through every batch of the key; should
        there be several, an unfinished one, else the newest."""
        found: list[RemoteBatch] = []
        token: str | None = None
        while True:
            query = {"pageSize": LIST_PAGE_SIZE, **({"pageToken": token} if token else {})}
            page = self._json("get", f"batches?{urlencode(query)}", "list batches")
            found += [
                batch
                for batch in map(_from_operation, page.get("operations") or [])
                if batch.display_name == display_name
            ]
            token = page.get("nextPageToken")
            if not token:
                break
        if len(found) > 1:
            log.warning("%d Google batches are named '%s'", len(found), display_name)
        return max(
            found,
            key=lambda b: (not b.state.finished, b.created_at or _LONG_AGO),
            default=None,
        )

    def get(self, name: str) -> RemoteBatch:
        return _from_operation(self._json("get", f"batches/{_batch_id(name)}", f"read {name}"))

    def cancel(self, name: str) -> None:
        """Asks Google to cancel; a batch that has already ended stays as it ended."""
        _batch_id(name)
        with self._errors(f"cancel {name}"):
            try:
                self._client.batches.cancel(name=name)
            except genai_errors.APIError as exc:
                # What Google answers for an ended batch is not documented: this is the
                # google.longrunning convention (and the fake's).
                if exc.code != 400 or exc.status != "FAILED_PRECONDITION":
                    raise
                log.info("%s had already ended: not cancelled (%s)", name, exc.message)

    def delete(self, name: str) -> None:
        """Deletes the batch (get then answers 404); a missing one is no error."""
        _batch_id(name)
        with self._errors(f"delete {name}"), _missing_is_fine():
            self._client.batches.delete(name=name)

    def delete_file(self, file_name: str) -> None:
        """Deletes an uploaded or result file: Google keeps them 48 h, and counts them
        against the project's Files storage meanwhile. A missing one is no error."""
        with self._errors(f"delete {file_name}"), _missing_is_fine():
            self._client.files.delete(name=file_name)

    def download_results(self, batch: RemoteBatch, dest: Path) -> Path:
        """Streams the batch's result file to `dest` (through `dest` + ".part", renamed once
        whole, so that a crash never leaves a truncated file under the final name)."""
        if batch.result_file is None:
            raise GoogleBatchError(
                f"{batch.name} ({batch.state.value}) has no result file to download"
            )
        part = dest.with_name(dest.name + ".part")
        try:
            with self._errors(f"download {batch.result_file} of {batch.name}"):
                # With a destination the SDK streams (httpx stream=True, 1 MiB chunks).
                self._client.files.download(file=batch.result_file, destination=part)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        part.replace(dest)
        return dest

    def close(self) -> None:
        self._client.close()

    # --- internals ---

    def _json(self, method: str, path: str, what: str) -> dict[str, Any]:
        # The SDK's API client, for what its typed answers drop (see the module docstring).
        with self._errors(what):
            response = self._client._api_client.request(method, path, {})
        try:
            body = json.loads(response.body) if response.body else {}
        except json.JSONDecodeError as exc:
            raise GoogleBatchError(
                f"Google's answer to {what} is not JSON ({exc}): check the base URL "
                f"{self.base_url}",
                retryable=True,
            ) from exc
        return body if isinstance(body, dict) else {}

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except genai_errors.APIError as exc:
            raise api_error(exc, what) from exc
        except TRANSPORT_ERRORS as exc:
            raise GoogleBatchError(
                f"Could not reach Google to {what} ({type(exc).__name__}: {exc}): check the "
                f"network and the base URL {self.base_url}",
                retryable=True,
            ) from exc
        except OSError as exc:  # the local file: missing, unreadable, or the disk full
            raise GoogleBatchError(
                f"Could not {what} ({type(exc).__name__}: {exc}): check the path and the free "
                "disk space"
            ) from exc
        except (ValueError, KeyError) as exc:
            # The SDK's own checks of Google's answers (an upload not finalized, no upload
            # URL, JSON it cannot read): worth another try later.
            raise GoogleBatchError(
                f"Could not {what}: Google's answer was not as expected ({exc}); check the "
                f"base URL {self.base_url}",
                retryable=True,
            ) from exc


@contextmanager
def _missing_is_fine() -> Iterator[None]:
    try:
        yield
    except genai_errors.APIError as exc:
        if exc.code != 404:
            raise


def api_error(exc: genai_errors.APIError, what: str) -> GoogleBatchError:
    code = exc.code
    said = f"{code} {exc.status or ''}".strip() + (f": {exc.message}" if exc.message else "")
    if code == 429:
        return GoogleBatchError(
            f"Google's quota is exhausted ({said}) to {what}: try again later",
            retryable=True,
            code=code,
        )
    if code == 408 or 500 <= code < 600:
        return GoogleBatchError(
            f"Google is unavailable ({said}) to {what}: try again later", retryable=True, code=code
        )
    # Google answers a bad key with 400 INVALID_ARGUMENT "API key not valid", not 401.
    if code in (401, 403) or (code == 400 and "api key" in (exc.message or "").lower()):
        return GoogleBatchError(
            f"Google rejected the API key ({said}) to {what}: check {API_KEY_ENV}", code=code
        )
    if code == 404:
        return GoogleBatchError(f"Google does not know it ({said}) to {what}", code=code)
    return GoogleBatchError(f"Google refused to {what} ({said})", code=code)


# google.rpc.Code names, for a per-line status object that gives only its number.
_RPC_CODES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}


def _line_error(raw: object) -> dict[str, Any]:
    error = raw if isinstance(raw, dict) else {"message": str(raw)}
    code = error.get("code")
    code = code if isinstance(code, int) else 0
    return {
        "code": code,
        "message": str(error.get("message") or "no message"),
        "status": str(error.get("status") or _RPC_CODES.get(code, "UNKNOWN")),
    }


def read_result_lines(path: Path) -> Iterator[ResultLine]:
    """The result file's lines, one at a time. A line without a key cannot be matched to any
    item: it is logged and skipped (its item then counts as unanswered). A keyed line with
    neither a response nor an error is an error line."""
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError as exc:
                log.warning("%s line %d is not JSON (%s): skipped", path, number, exc)
                continue
            key = line.get("key") if isinstance(line, dict) else None
            if not isinstance(key, str):
                log.warning("%s line %d has no key: skipped", path, number)
                continue
            response = line.get("response")
            error = line.get("error") or line.get("status")
            if error is None and not isinstance(response, dict):
                error = {"message": "Google's result line has neither a response nor an error"}
            yield ResultLine(
                key=key,
                response=response if isinstance(response, dict) else None,
                error=_line_error(error) if error is not None else None,
            )
