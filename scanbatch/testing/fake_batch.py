"""A fake of Google's Files API and Batch API on loopback, for the real google-genai SDK.

    with FakeBatchAPI() as fake:
        client = genai.Client(api_key="k", http_options=HttpOptions(base_url=fake.base_url))
        f = client.files.upload(file="in.jsonl", config={"mime_type": "jsonl"})
        job = client.batches.create(model="m", src=f.name, config={"display_name": "d"})
        fake.finish(job.name)                       # or finish_after seconds
        client.batches.get(name=job.name).dest.file_name

Uploads are streamed to a folder on disk (`root`, a temp folder by default) and results are
built by reading the input file line by line, so gigabytes pass through without being held.

The REST shapes, as google-genai 3.6.1 (vertexai=False) sends and reads them
-------------------------------------------------------------------------------
Every call carries the key as header `x-goog-api-key` (`_api_client.BaseApiClient.__init__`),
except the upload chunks, which the upload URL authorises. Paths are `/{version}/...`; the
SDK's default version for the Developer API is `v1` (`GOOGLE_AI_API_DEFAULT_VERSION`), Google
documents these APIs under `v1beta`: any version is accepted here.

- Upload (`files.upload` -> `Files._create`, then `_api_client.upload_file` / `_upload_fd`):
  `POST /upload/{v}/files`, headers `X-Goog-Upload-Protocol: resumable`,
  `X-Goog-Upload-Command: start`, `X-Goog-Upload-Header-Content-Length: <size>`,
  `X-Goog-Upload-Header-Content-Type: <mime>`, body `{"file": {"display_name", "mime_type",
  "size_bytes"}}` (snake_case: `_common.convert_to_dict` of a `types.File`; proto JSON takes
  either case); the answer's header `x-goog-upload-url` is where the bytes go. Then one
  `POST <upload url>` per 8 MiB chunk (`CHUNK_SIZE`), headers `X-Goog-Upload-Command: upload`
  (`upload, finalize` on the last), `X-Goog-Upload-Offset`, `Content-Length`. Each answer must
  carry `x-goog-upload-status` (`active`, then `final`; without it the SDK re-sends the chunk
  up to 3 times, sleeping 1, 2, 4 s); the final one's body is `{"file": {<File>}}`.
  A File: `{name: "files/<id>", displayName, mimeType, sizeBytes: "<int>", createTime,
  updateTime, expirationTime, sha256Hash, uri, state: "ACTIVE", source: "UPLOADED" |
  "GENERATED", downloadUri (generated files only)}`.
- Download (`files.download(file=, destination=)` -> `_api_client.download_file`):
  `GET /{v}/files/<id>:download?alt=media`, streamed to `destination` (httpx `stream=True`,
  1 MiB chunks); without a destination the whole body comes back as bytes. Google itself
  serves `/download/{v}/files/<id>:download`: both are answered.
- Create (`batches.create(model=, src="files/<id>", config={"display_name": })`, built by
  `_CreateBatchJobParameters_to_mldev`): `POST /{v}/models/<m>:batchGenerateContent`, body
  `{"batch": {"displayName": d, "inputConfig": {"fileName": "files/<id>"}}}`. The answer is a
  long-running Operation named after the batch (read by `_BatchJob_from_mldev`):
  `{name: "batches/<id>", metadata: {"@type": ...GenerateContentBatch, name, model:
  "models/<m>", displayName, inputConfig, createTime, updateTime, endTime (once finished),
  batchStats: {requestCount, successfulRequestCount, failedRequestCount,
  pendingRequestCount} (int64 as strings), state: "BATCH_STATE_*", output: {responsesFile:
  "files/<id>"} (once there are results)}, done: bool, error: {code, message} (failed,
  expired), response: {"@type": ...GenerateContentBatchOutput, responsesFile}}`.
  The SDK keeps only `metadata.*`: `BatchJob.error` stays None for the Developer API, which is
  why scanbatch.backlog.google reads get and list as JSON.
- States: Google sends `BATCH_STATE_{UNSPECIFIED, PENDING, RUNNING, SUCCEEDED, FAILED,
  CANCELLED, EXPIRED}`; the SDK renames them `JOB_STATE_*` (`_transformers.t_job_state`), and
  its `JobState` has more (QUEUED, PAUSED, CANCELLING, UPDATING, PARTIALLY_SUCCEEDED) that
  Vertex sends. The result file is `metadata.output.responsesFile`, in the SDK
  `BatchJob.dest.file_name`.
- Get (`batches.get(name="batches/<id>")`): `GET /{v}/batches/<id>` -> the Operation.
- List (`batches.list(config={"page_size": n})`, a `Pager` following `nextPageToken`):
  `GET /{v}/batches?pageSize=n&pageToken=t` -> `{operations: [<Operation>],
  nextPageToken}`.
- Cancel (`batches.cancel`): `POST /{v}/batches/<id>:cancel` -> `{}`.
- Delete (`batches.delete`): `DELETE /{v}/batches/<id>` -> `{}`.
- Errors (`errors.APIError.raise_for_response`): `{"error": {code, message, status}}`; a bad
  key is 400 INVALID_ARGUMENT "API key not valid. Please pass a valid API key."
- Input file (Google's batch guide): JSONL, one `{"key": k, "request":
  <GenerateContentRequest>}` per line. Result file: JSONL, one line per request, in no
  particular order (python-genai #1909): `{"key": k, "response": <GenerateContentResponse>}`
  or, for a request that failed alone, `{"key": k, "error": {code, message, status}}`
  (Google calls it a status object: readers should take `status` too).

What this fake does beyond the shapes: a batch goes PENDING, RUNNING, then its outcome
(`set_outcome`: succeed, fail, expire, cancel), after `finish_after` seconds (half pending,
half running; 0 = as soon as its answers are built) or by `advance()` / `finish()` when
`finish_after` is None. Answers come from `answer(key, request)` (a GenerateContentResponse
dict, or a `LineError`); `fail_keys` fail alone; results are shuffled unless `shuffle=False`.
`fail_next(operation, status, after=...)` makes one call fail (after doing its work, with
`after=True`: the batch created but the caller never told). Every call is recorded."""

from __future__ import annotations

import json
import random
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from scanbatch.testing.fake_gemini import (
    LoopbackFake,
    Reply,
    ReplyHandler,
    error_reply,
    extraction_reply,
)

Outcome = Literal["succeed", "fail", "expire", "cancel"]
Operation = Literal["upload", "chunk", "download", "create", "get", "list", "cancel", "delete"]

BAD_KEY_MESSAGE = "API key not valid. Please pass a valid API key."
READ_CHUNK = 1 << 20
TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1beta."


@dataclass(frozen=True)
class LineError:
    """One request that failed alone: its line in the result file is `{"key", "error"}`."""

    code: int = 400
    message: str = "Request contains an invalid argument."
    status: str = "INVALID_ARGUMENT"

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "status": self.status}


Answer = Callable[[str, dict[str, Any]], "dict[str, Any] | LineError"]

_DEFAULT_ANSWER = extraction_reply().body


def default_answer(key: str, request: dict[str, Any]) -> dict[str, Any]:
    """A plausible extraction, the same for every request."""
    return _DEFAULT_ANSWER


@dataclass(frozen=True)
class UploadRecord:
    name: str  # "files/<id>"
    display_name: str
    size: int
    lines: int
    path: Path  # the bytes as received


@dataclass(frozen=True)
class CreateRecord:
    name: str  # "batches/<id>"
    display_name: str
    model: str  # as in the path: "gemini-..." (the SDK adds "models/")
    file_name: str


@dataclass
class _File:
    name: str
    display_name: str
    mime_type: str
    size: int
    path: Path
    generated: bool = False
    created: str = ""
    lines: int = 0

    def resource(self, base_url: str) -> dict[str, Any]:
        file_id = self.name.removeprefix("files/")
        body = {
            "name": self.name,
            "displayName": self.display_name,
            "mimeType": self.mime_type,
            "sizeBytes": str(self.size),
            "createTime": self.created,
            "updateTime": self.created,
            "expirationTime": _timestamp(timedelta(hours=48)),
            "uri": f"{base_url}/v1beta/files/{file_id}",
            "state": "ACTIVE",
            "source": "GENERATED" if self.generated else "UPLOADED",
        }
        if self.generated:
            body["downloadUri"] = f"{base_url}/download/v1beta/files/{file_id}:download?alt=media"
        return body


@dataclass
class _Upload:
    file: _File
    expected: int
    offset: int = 0
    lines: int = 0
    last_byte: bytes = b""


@dataclass
class _Batch:
    name: str
    display_name: str
    model: str
    input: _File
    request_count: int
    outcome: Outcome
    finish_after: float | None
    created_at: float
    created: str
    updated: str
    state: str = "BATCH_STATE_PENDING"
    ended: str | None = None
    error: dict[str, Any] | None = None
    result_file: str | None = None
    results: list[tuple[bytes, bool]] = field(default_factory=list)  # (line, failed alone)
    input_error: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    built: threading.Event = field(default_factory=threading.Event)
    worker: threading.Thread | None = None

    @property
    def finished(self) -> bool:
        return self.state in _FINAL_STATES

    def operation(self) -> dict[str, Any]:
        answered = len(self.results)
        failed = sum(1 for _, alone in self.results if alone)
        metadata: dict[str, Any] = {
            "@type": TYPE_PREFIX + "GenerateContentBatch",
            "name": self.name,
            "model": f"models/{self.model}",
            "displayName": self.display_name,
            "inputConfig": {"fileName": self.input.name},
            "createTime": self.created,
            "updateTime": self.updated,
            "batchStats": {
                "requestCount": str(self.request_count),
                "successfulRequestCount": str(answered - failed),
                "failedRequestCount": str(failed),
                "pendingRequestCount": str(0 if self.finished else self.request_count - answered),
            },
            "state": self.state,
        }
        op: dict[str, Any] = {"name": self.name, "metadata": metadata, "done": self.finished}
        if self.ended:
            metadata["endTime"] = self.ended
        if self.result_file:
            metadata["output"] = {"responsesFile": self.result_file}
            op["response"] = {
                "@type": TYPE_PREFIX + "GenerateContentBatchOutput",
                "responsesFile": self.result_file,
            }
        if self.error:
            op["error"] = self.error
        return op


_FINAL_STATES = {
    "BATCH_STATE_SUCCEEDED",
    "BATCH_STATE_FAILED",
    "BATCH_STATE_CANCELLED",
    "BATCH_STATE_EXPIRED",
}
_OUTCOME_STATES: dict[str, str] = {
    "succeed": "BATCH_STATE_SUCCEEDED",
    "fail": "BATCH_STATE_FAILED",
    "expire": "BATCH_STATE_EXPIRED",
    "cancel": "BATCH_STATE_CANCELLED",
}

_V = r"/(?:download/)?(?P<version>[^/]+)"
# (method, path, handler, the operation `fail_next` and the records know it by)
_ROUTES: list[tuple[str, re.Pattern[str], str, str | None]] = [
    ("POST", re.compile(r"/upload/(?P<version>[^/]+)/files"), "_upload", "upload"),
    ("GET", re.compile(_V + r"/files/(?P<id>[^/:]+):download"), "_download", "download"),
    ("GET", re.compile(_V + r"/files/(?P<id>[^/:]+)"), "_get_file", None),
    ("DELETE", re.compile(_V + r"/files/(?P<id>[^/:]+)"), "_delete_file", None),
    (
        "POST",
        re.compile(_V + r"/models/(?P<model>[^/:]+):batchGenerateContent"),
        "_create",
        "create",
    ),
    ("GET", re.compile(_V + r"/batches"), "_list", "list"),
    ("GET", re.compile(_V + r"/batches/(?P<id>[^/:]+)"), "_get", "get"),
    ("POST", re.compile(_V + r"/batches/(?P<id>[^/:]+):cancel"), "_cancel", "cancel"),
    ("DELETE", re.compile(_V + r"/batches/(?P<id>[^/:]+)"), "_delete", "delete"),
]
_RECORDS = {"get": "gets", "cancel": "cancels", "delete": "deletes"}


def _timestamp(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _field(body: dict[str, Any], camel: str) -> str:
    """A field of a request body, sent in either case (proto JSON accepts both)."""
    snake = re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), camel)
    return str(body.get(camel) or body.get(snake) or "")


def _new_id() -> str:
    return secrets.token_hex(6)


class _Handler(ReplyHandler):
    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        fake: FakeBatchAPI = self.server.fake
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self._body_read = False
        fake._record_request(method, self.path)
        for route_method, pattern, handler_name, operation in _ROUTES:
            match = pattern.fullmatch(url.path)
            if match and route_method == method:
                if operation == "upload" and "upload_id" in self.query:
                    operation = "chunk"
                self._call(fake, handler_name, operation, match.groupdict())
                return
        self._answer(error_reply(404, f"fake Batch API: no route {method} {url.path}"))

    def _call(
        self, fake: FakeBatchAPI, handler_name: str, operation: str | None, args: dict[str, str]
    ) -> None:
        # The upload URL is authorised by its upload_id, as Google's is: the SDK sends the
        # chunks without the key.
        if operation != "chunk":
            key = self.headers.get("x-goog-api-key")
            if key == fake.bad_key:
                self._answer(error_reply(400, BAD_KEY_MESSAGE))
                return
            if not key:
                self._answer(error_reply(403, "Method doesn't allow unregistered callers"))
                return
        if operation in _RECORDS:
            fake._record(_RECORDS[operation], f"batches/{args['id']}")
        elif operation == "list":
            fake._record("lists", dict(self.query))
        failure = fake._take_failure(operation) if operation else None
        reply = None
        if failure is not None:
            status, message, after = failure
            reply = error_reply(status, message or f"fake Batch API: injected {status}")
            if operation == "chunk":
                # "final" makes the SDK raise at once; a Google 5xx without the header would
                # make it re-send the chunk up to 3 times (1, 2, 4 s apart) first.
                reply.headers["x-goog-upload-status"] = "final"
            if not after or operation in ("chunk", "download"):
                self._answer(reply)
                return
        getattr(self, handler_name)(fake, reply, **args)

    # --- request and answer helpers ---

    def body_chunks(self) -> Iterator[bytes]:
        """The request body in pieces of at most 1 MiB, never whole."""
        self._body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return
                remaining = size
                while remaining:
                    piece = self.rfile.read(min(remaining, READ_CHUNK))
                    if not piece:
                        return
                    remaining -= len(piece)
                    yield piece
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            piece = self.rfile.read(min(remaining, READ_CHUNK))
            if not piece:
                return
            remaining -= len(piece)
            yield piece

    def json_body(self) -> Any:
        raw = b"".join(self.body_chunks())
        try:
            return json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return None

    def _answer(self, reply: Reply) -> None:
        if not self._body_read:
            for _ in self.body_chunks():
                pass  # drain it, so that the kept-alive connection stays in step
        self.send_reply(reply)

    # Each handler gets `failure`: the error to answer once the work is done (`fail_next`
    # with after=True), else None.

    # --- Files API ---

    def _upload(self, fake: FakeBatchAPI, failure: Reply | None, version: str) -> None:
        upload_id = self.query.get("upload_id")
        if upload_id is None:
            self._start_upload(fake, failure, version)
        else:
            self._upload_chunk(fake, upload_id)

    def _start_upload(self, fake: FakeBatchAPI, failure: Reply | None, version: str) -> None:
        if self.headers.get("X-Goog-Upload-Command", "").lower() != "start":
            self._answer(error_reply(400, "X-Goog-Upload-Command must be 'start'"))
            return
        meta = (self.json_body() or {}).get("file") or {}
        size = int(self.headers.get("X-Goog-Upload-Header-Content-Length") or 0)
        mime = self.headers.get("X-Goog-Upload-Header-Content-Type") or _field(meta, "mimeType")
        upload_id = fake._start_upload(_field(meta, "displayName"), mime, size)
        url = f"{fake.base_url}/upload/{version}/files?upload_id={upload_id}"
        headers = {
            "x-goog-upload-url": url,
            "x-goog-upload-status": "active",
            "x-goog-upload-chunk-granularity": str(8 << 20),
        }
        self._answer(failure or Reply(body=b"", headers=headers))

    def _upload_chunk(self, fake: FakeBatchAPI, upload_id: str) -> None:
        command = self.headers.get("X-Goog-Upload-Command", "").lower()
        offset = int(self.headers.get("X-Goog-Upload-Offset") or -1)
        finalize = "finalize" in command
        result = fake._receive_chunk(upload_id, offset, self.body_chunks(), finalize)
        if isinstance(result, Reply):
            result.headers["x-goog-upload-status"] = "final"  # stop: this upload is over
            self._answer(result)
        elif result is None:
            self._answer(Reply(body=b"", headers={"x-goog-upload-status": "active"}))
        else:
            self._answer(
                Reply(
                    body={"file": result.resource(fake.base_url)},
                    headers={"x-goog-upload-status": "final"},
                )
            )

    def _get_file(self, fake: FakeBatchAPI, failure: Reply | None, version: str, id: str) -> None:
        file = fake._file(f"files/{id}")
        if file is None:
            self._answer(error_reply(404, f"File files/{id} not found"))
        else:
            self._answer(Reply(body=file.resource(fake.base_url)))

    def _delete_file(
        self, fake: FakeBatchAPI, failure: Reply | None, version: str, id: str
    ) -> None:
        self._answer(Reply(body={}) if fake._delete_file(f"files/{id}") else error_reply(404))

    def _download(self, fake: FakeBatchAPI, failure: Reply | None, version: str, id: str) -> None:
        file = fake._file(f"files/{id}")
        if file is None:
            self._answer(error_reply(404, f"File files/{id} not found"))
            return
        if not file.generated:
            self._answer(error_reply(400, "Only generated files can be downloaded"))
            return
        fake._record("downloads", file.name)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(file.path.stat().st_size))
            self.end_headers()
            with file.path.open("rb") as f:
                while piece := f.read(READ_CHUNK):
                    self.wfile.write(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # --- Batch API ---

    def _create(self, fake: FakeBatchAPI, failure: Reply | None, version: str, model: str) -> None:
        batch = (self.json_body() or {}).get("batch") or {}
        file_name = _field(batch.get("inputConfig") or batch.get("input_config") or {}, "fileName")
        display_name = _field(batch, "displayName")
        if not display_name:
            self._answer(error_reply(400, "batch.display_name is required"))
            return
        if fake._file(file_name) is None:
            self._answer(error_reply(400, f"Input file {file_name!r} not found"))
            return
        op = fake._create(model, display_name, file_name)
        self._answer(failure or Reply(body=op))

    def _get(self, fake: FakeBatchAPI, failure: Reply | None, version: str, id: str) -> None:
        op = fake._operation(f"batches/{id}")
        reply = error_reply(404, f"Batch batches/{id} not found") if op is None else Reply(body=op)
        self._answer(failure or reply)

    def _list(self, fake: FakeBatchAPI, failure: Reply | None, version: str) -> None:
        size = int(self.query.get("pageSize") or fake.max_page_size)
        start = int(self.query.get("pageToken") or 0)
        page, more = fake._page(start, max(1, min(size, fake.max_page_size)))
        body: dict[str, Any] = {"operations": page}
        if more:
            body["nextPageToken"] = str(start + len(page))
        self._answer(failure or Reply(body=body))

    def _cancel(self, fake: FakeBatchAPI, failure: Reply | None, version: str, id: str) -> None:
        name = f"batches/{id}"
        found = fake.cancel(name)
        if found is None:
            reply = error_reply(404, f"Batch {name} not found")
        elif not found:
            # A guess at Google's answer for a batch that has ended (not documented).
            reply = error_reply(
                400, f"Batch {name} has already ended", status_name="FAILED_PRECONDITION"
            )
        else:
            reply = Reply(body={})
        self._answer(failure or reply)

    def _delete(self, fake: FakeBatchAPI, failure: Reply | None, version: str, id: str) -> None:
        found = fake._delete(f"batches/{id}")
        reply = Reply(body={}) if found else error_reply(404, f"Batch batches/{id} not found")
        self._answer(failure or reply)


class FakeBatchAPI(LoopbackFake):
    """The fake Files and Batch API. Controls (attributes may change while it runs):

    - `answer(key, request)`: a GenerateContentResponse dict or a `LineError` per request;
    - `fail_keys`: keys answered with `LineError()` whatever `answer` says;
    - `shuffle`: results out of input order (default), `seed` for a repeatable order;
    - `finish_after`: seconds from create to the outcome (None: only `advance`/`finish`);
    - `set_outcome(outcome, display_name=None)`, `fail_next(operation, status, after=)`;
    - `cancelled_keep`: lines a batch cancelled while RUNNING keeps (None: all it answered);
    - `bad_key`: the API key answered 400 "API key not valid";
    - `max_page_size`: the most batches one list page holds.

    Records: `uploads`, `creates`, `gets`, `lists`, `cancels`, `deletes`, `downloads`,
    `requests` (method, path)."""

    handler = _Handler
    thread_name = "fake-batch-api"
    cancelled_keep: int | None

    def __init__(
        self,
        *,
        answer: Answer = default_answer,
        fail_keys: set[str] | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        finish_after: float | None = 0.0,
        bad_key: str = "bad-key",
        max_page_size: int = 50,
        root: Path | None = None,
        fail_message: str = "Batch processing failed: an internal error occurred (fake)",
        expire_message: str = "Batch expired: not completed within 48 hours (fake)",
    ) -> None:
        super().__init__()
        # What each request is answered, and in which order.
        self.answer, self.fail_keys, self.shuffle = answer, set(fail_keys or ()), shuffle
        # How a batch ends.
        self.finish_after, self.cancelled_keep = finish_after, None
        self.fail_message, self.expire_message = fail_message, expire_message
        self.bad_key, self.max_page_size = bad_key, max_page_size
        self._random = random.Random(seed)
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="fake-batch-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        self.uploads: list[UploadRecord] = []
        self.creates: list[CreateRecord] = []
        self.gets: list[str] = []
        self.lists: list[dict[str, str]] = []
        self.cancels: list[str] = []
        self.deletes: list[str] = []
        self.downloads: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.RLock()
        self._files: dict[str, _File] = {}
        self._sessions: dict[str, _Upload] = {}
        self._batches: dict[str, _Batch] = {}  # in creation order
        self._outcomes: dict[str, Outcome] = {}
        self._next_outcomes: deque[Outcome] = deque()
        self._failures: dict[str, deque[tuple[int, str | None, bool]]] = {}

    # --- controls ---

    def set_outcome(self, outcome: Outcome, display_name: str | None = None) -> None:
        """How a batch ends: the batch of that display name, else the next batch created."""
        if outcome not in _OUTCOME_STATES:
            raise ValueError(f"outcome {outcome!r}: one of {sorted(_OUTCOME_STATES)}")
        with self._lock:
            if display_name is None:
                self._next_outcomes.append(outcome)
            else:
                self._outcomes[display_name] = outcome

    def fail_next(
        self,
        operation: Operation,
        status: int = 503,
        message: str | None = None,
        *,
        after: bool = False,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `operation` answer `status`; with `after` (create, upload
        start) the work is done first, so the caller never hears of what it caused."""
        with self._lock:
            queue = self._failures.setdefault(operation, deque())
            queue.extend([(status, message, after)] * times)

    def advance(self, name: str | None = None) -> None:
        """One step for that batch (else every unfinished one): PENDING -> RUNNING -> its
        outcome. Reaching SUCCEEDED waits until its answers are built."""
        for batch in self._targets(name):
            with self._lock:
                if batch.state == "BATCH_STATE_PENDING":
                    self._run(batch)
                    continue
                if batch.finished:
                    continue
            if batch.outcome == "succeed":
                batch.built.wait()
            with self._lock:
                if not batch.finished:
                    self._finish(batch, batch.outcome)

    def finish(self, name: str | None = None) -> None:
        """Steps until that batch (else every one) has ended."""
        for batch in self._targets(name):
            while not batch.finished:
                self.advance(batch.name)

    def cancel(self, name: str) -> bool | None:
        """Cancels as the API does: True when cancelled, False when it had already ended, None
        when there is no such batch."""
        with self._lock:
            batch = self._batches.get(name)
            if batch is None:
                return None
            self._refresh(batch)
            if batch.finished:
                return False
            self._finish(batch, "cancel")
            return True

    # --- inspection ---

    def state(self, name: str) -> str:
        """The batch's state as Google names it, "BATCH_STATE_..."."""
        with self._lock:
            batch = self._batches[name]
            self._refresh(batch)
            return batch.state

    def answered(self, name: str) -> int:
        """Lines answered so far."""
        with self._lock:
            return len(self._batches[name].results)

    def result_lines(self, name: str) -> list[dict[str, Any]]:
        """The batch's result file, parsed, in file order ([] when it has none)."""
        with self._lock:
            batch = self._batches[name]
            file = self._files.get(batch.result_file) if batch.result_file else None
        if file is None:
            return []
        with file.path.open("rb") as f:
            return [json.loads(line) for line in f]

    @property
    def batch_names(self) -> list[str]:
        with self._lock:
            return list(self._batches)

    # --- called by the handler ---

    def _record_request(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def _record(self, what: str, value: Any) -> None:
        with self._lock:
            getattr(self, what).append(value)

    def _take_failure(self, operation: str) -> tuple[int, str | None, bool] | None:
        with self._lock:
            queue = self._failures.get(operation)
            return queue.popleft() if queue else None

    def _file(self, name: str) -> _File | None:
        with self._lock:
            return self._files.get(name)

    def _delete_file(self, name: str) -> bool:
        with self._lock:
            file = self._files.pop(name, None)
        if file is not None:
            file.path.unlink(missing_ok=True)
        return file is not None

    def _start_upload(self, display_name: str, mime_type: str, size: int) -> str:
        file_id = _new_id()
        path = self.root / "files" / file_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        file = _File(f"files/{file_id}", display_name, mime_type, 0, path, created=_timestamp())
        upload_id = secrets.token_urlsafe(12)
        with self._lock:
            self._sessions[upload_id] = _Upload(file, size)
        return upload_id

    def _receive_chunk(
        self, upload_id: str, offset: int, chunks: Iterator[bytes], finalize: bool
    ) -> Reply | _File | None:
        """Appends one chunk: the finished File on finalize, None while active, or an error."""
        with self._lock:
            session = self._sessions.get(upload_id)
        if session is None:
            return error_reply(404, "No such upload session")
        if offset != session.offset:
            return error_reply(400, f"Upload offset {offset}, expected {session.offset}")
        with session.file.path.open("ab") as out:
            for piece in chunks:
                out.write(piece)
                session.offset += len(piece)
                session.lines += piece.count(b"\n")
                session.last_byte = piece[-1:]
        if not finalize:
            return None
        with self._lock:
            self._sessions.pop(upload_id, None)
        if session.offset != session.expected:
            return error_reply(
                400, f"Uploaded {session.offset} bytes, {session.expected} were announced"
            )
        if session.offset and session.last_byte != b"\n":
            session.lines += 1
        file = session.file
        file.size, file.lines = session.offset, session.lines
        with self._lock:
            self._files[file.name] = file
            self.uploads.append(
                UploadRecord(file.name, file.display_name, file.size, session.lines, file.path)
            )
        return file

    def _create(self, model: str, display_name: str, file_name: str) -> dict[str, Any]:
        now = _timestamp()
        with self._lock:
            file = self._files[file_name]
            if display_name in self._outcomes:
                outcome = self._outcomes[display_name]
            else:
                outcome = self._next_outcomes.popleft() if self._next_outcomes else "succeed"
            batch = _Batch(
                name=f"batches/{_new_id()}",
                display_name=display_name,
                model=model,
                input=file,
                request_count=file.lines,
                outcome=outcome,
                finish_after=self.finish_after,
                created_at=time.monotonic(),
                created=now,
                updated=now,
            )
            self._batches[batch.name] = batch
            self.creates.append(CreateRecord(batch.name, display_name, model, file_name))
            op = batch.operation()  # Google answers the create while the batch is pending
            self._refresh(batch)
        return op

    def _operation(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            batch = self._batches.get(name)
            if batch is None:
                return None
            self._refresh(batch)
            return batch.operation()

    def _page(self, start: int, size: int) -> tuple[list[dict[str, Any]], bool]:
        with self._lock:
            newest_first = list(reversed(self._batches.values()))
            page = newest_first[start : start + size]
            for batch in page:
                self._refresh(batch)
            return [b.operation() for b in page], start + size < len(newest_first)

    def _delete(self, name: str) -> bool:
        with self._lock:
            batch = self._batches.pop(name, None)
        if batch is None:
            return False
        batch.stop.set()  # deleting does not cancel on Google; here nobody could look anyway
        return True

    # --- the batch's life ---

    def _targets(self, name: str | None) -> list[_Batch]:
        with self._lock:
            if name is not None:
                return [self._batches[name]]
            return [b for b in self._batches.values() if not b.finished]

    def _refresh(self, batch: _Batch) -> None:
        """Moves a batch along by the clock (caller holds the lock)."""
        if batch.finished or batch.finish_after is None:
            return
        if batch.input_error is not None:
            self._finish(batch, "fail")
            return
        elapsed = time.monotonic() - batch.created_at
        if batch.state == "BATCH_STATE_PENDING" and elapsed >= batch.finish_after / 2:
            self._run(batch)
        ready = batch.outcome != "succeed" or batch.built.is_set()
        if batch.state == "BATCH_STATE_RUNNING" and elapsed >= batch.finish_after and ready:
            self._finish(batch, batch.outcome)

    def _run(self, batch: _Batch) -> None:
        batch.state = "BATCH_STATE_RUNNING"
        batch.updated = _timestamp()
        batch.worker = threading.Thread(
            target=self._work, args=(batch,), name=f"fake-{batch.name}", daemon=True
        )
        batch.worker.start()

    def _work(self, batch: _Batch) -> None:
        """Answers the input file line by line, as Google's machines would."""
        try:
            with batch.input.path.open("rb") as lines:
                for number, raw in enumerate(lines, 1):
                    if batch.stop.is_set():
                        return
                    if not raw.strip():
                        continue
                    try:
                        line = json.loads(raw)
                        key, request = line["key"], line["request"]
                    except (ValueError, KeyError, TypeError) as exc:
                        batch.input_error = (
                            f"Input file {batch.input.name} line {number} is not "
                            f'{{"key": ..., "request": {{...}}}} JSON ({exc!r})'
                        )
                        return
                    batch.results.append(self._answer_line(key, request))
        finally:
            batch.built.set()

    def _answer_line(self, key: str, request: dict[str, Any]) -> tuple[bytes, bool]:
        try:
            answer = LineError() if key in self.fail_keys else self.answer(key, request)
        except Exception as exc:  # a broken responder shows in its line, not as a hang
            answer = LineError(500, f"fake answer() raised {exc!r}", "INTERNAL")
        if isinstance(answer, LineError):
            line = {"key": key, "error": answer.as_dict()}
        else:
            line = {"key": key, "response": answer}
        return json.dumps(line).encode() + b"\n", isinstance(answer, LineError)

    def _finish(self, batch: _Batch, outcome: Outcome) -> None:
        """Ends the batch (caller holds the lock)."""
        if batch.input_error is not None:
            outcome = "fail"
        batch.stop.set()
        if outcome != "succeed" and batch.worker is not None:
            batch.worker.join()  # at most one line more
        batch.state = _OUTCOME_STATES[outcome]
        batch.updated = batch.ended = _timestamp()
        if outcome == "fail":
            batch.error = {"code": 13, "message": batch.input_error or self.fail_message}
        elif outcome == "expire":
            batch.error = {"code": 4, "message": self.expire_message}
        kept = batch.results
        if outcome == "cancel" and self.cancelled_keep is not None:
            kept = kept[: self.cancelled_keep]
        batch.results = kept
        if outcome in ("succeed", "cancel") and kept:
            batch.result_file = self._write_results(batch, [line for line, _ in kept])

    def _write_results(self, batch: _Batch, lines: list[bytes]) -> str:
        order = list(lines)
        if self.shuffle and len(order) > 1:
            self._random.shuffle(order)
            if order == lines:
                order = order[1:] + order[:1]  # out of order, always
        file_id = f"batch-{batch.name.removeprefix('batches/')}"
        path = self.root / "files" / file_id
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            out.writelines(order)
        file = _File(
            f"files/{file_id}",
            f"{batch.display_name} results",
            "application/jsonl",
            path.stat().st_size,
            path,
            generated=True,
            created=_timestamp(),
        )
        self._files[file.name] = file
        return file.name

    # --- lifecycle ---

    def close(self) -> None:
        super().close()
        with self._lock:
            batches = list(self._batches.values())
        for batch in batches:
            batch.stop.set()
            if batch.worker is not None:
                batch.worker.join(timeout=5)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
