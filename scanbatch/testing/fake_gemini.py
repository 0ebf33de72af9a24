"""A fake Gemini API on loopback, so the real google-genai SDK can be tested without Google.

    with FakeGemini() as fake:
        fake.script(error_reply(429, retry_after=1), extraction_reply({"artistName": ...}))
        extractor = create_extractor("gemini", settings, base_url=fake.base_url)
        ...
        fake.requests  # every request: path, headers, parsed JSON body, arrival time

It answers `POST /<version>/models/<model>:generateContent` (any version: the SDK picks v1 or
v1beta depending on how it is configured). Each request takes the next scripted `Reply`, or
the responder's answer (when one is given and it answers), else the default.

A responder answers from what the request holds, e.g. differently per system prompt
(`system_instruction_text`) and per photo (`image_digests`), so that experiment variants
really differ:

    FakeGemini(responder=lambda req: extraction_reply(...) if "v2" in ... else None)"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

PATH_SUFFIX = ":generateContent"


@dataclass
class Reply:
    """One scripted answer. `body` is sent as JSON unless it is str/bytes (sent verbatim)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering; past the client timeout, a timeout


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() on arrival

    @property
    def model(self) -> str:
        return self.path.rsplit("/", 1)[-1].removesuffix(PATH_SUFFIX)

    @property
    def api_version(self) -> str:
        return self.path.strip("/").split("/", 1)[0]


def usage_metadata(prompt_tokens: int = 1200, output_tokens: int = 80) -> dict[str, int]:
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
    }


def text_reply(
    text: str,
    *,
    finish_reason: str = "STOP",
    prompt_tokens: int = 1200,
    output_tokens: int = 80,
    delay: float = 0.0,
) -> Reply:
    """A 200 whose first candidate's text is `text` (valid JSON or not)."""
    body = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": finish_reason,
                "index": 0,
            }
        ],
        "usageMetadata": usage_metadata(prompt_tokens, output_tokens),
        "modelVersion": "fake-gemini",
    }
    return Reply(body=body, delay=delay)


SAMPLE_FIELDS: dict[str, Any] = {
    "artistName": {"value": "Stereolab", "confidence": 0.97},
    "albumTitle": {"value": "Dots and Loops", "confidence": 0.95},
    "labelName": {"value": "Duophonic", "confidence": 0.9},
    "catalogNumber": {"value": "D-UHF-D17", "confidence": 0.85},
    "reviewText": {"value": "fav trk 3!! v. lo-fi, FCC ok", "confidence": 0.7},
    "upc": {"value": "036172945825", "confidence": 0.92},
}


def extraction_reply(fields: dict[str, Any] | None = None, **kwargs: Any) -> Reply:
    """A canned extraction: the structured output Gemini would return."""
    return text_reply(json.dumps(SAMPLE_FIELDS if fields is None else fields), **kwargs)


def error_reply(
    status: int,
    message: str = "",
    *,
    retry_after: float | str | None = None,
    retry_delay: str | None = None,
    delay: float = 0.0,
    status_name: str | None = None,
) -> Reply:
    """An error as Gemini sends it: `{"error": {code, message, status}}`, optionally with a
    Retry-After header and/or a google.rpc.RetryInfo detail (`retry_delay` like "2s").
    `status_name` overrides the status usual for the code (e.g. FAILED_PRECONDITION)."""
    statuses = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
    }
    error: dict[str, Any] = {
        "code": status,
        "message": message or f"fake error {status}",
        "status": status_name or statuses.get(status, "UNKNOWN"),
    }
    if retry_delay is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        ]
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply(status=status, body={"error": error}, headers=headers, delay=delay)


def timeout_reply(seconds: float = 5.0) -> Reply:
    """Answers only after `seconds`: set it past the client's timeout."""
    return extraction_reply(delay=seconds)


def malformed_json_reply() -> Reply:
    return text_reply('{"artistName": {"value": "Stereolab", "confidence": 0.9')


def empty_text_reply() -> Reply:
    return text_reply("")


def no_candidates_reply() -> Reply:
    return Reply(body={"candidates": [], "usageMetadata": usage_metadata(1200, 0)})


def safety_block_reply(*, prompt: bool = True, finish: bool = False) -> Reply:
    """Blocked: `prompt` sets promptFeedback.blockReason (and no candidates), `finish` a
    candidate with finishReason SAFETY and no text."""
    body: dict[str, Any] = {"usageMetadata": usage_metadata(1200, 0)}
    if prompt:
        body["promptFeedback"] = {"blockReason": "SAFETY"}
    if finish:
        body["candidates"] = [
            {
                "content": {"role": "model", "parts": []},
                "finishReason": "SAFETY",
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
                ],
            }
        ]
    return Reply(body=body)


def finish_reason_reply(reason: str, text: str = "") -> Reply:
    return text_reply(text, finish_reason=reason)


def system_instruction_text(body: Any) -> str:
    """The system prompt the SDK sent (empty when none)."""
    if not isinstance(body, dict):
        return ""
    si = body.get("systemInstruction") or body.get("system_instruction") or {}
    return "\n".join(p.get("text", "") for p in si.get("parts", []) if isinstance(p, dict))


def image_digests(body: Any) -> list[str]:
    """SHA-256 (hex) of each inline image in the request, in order."""
    found = []
    if not isinstance(body, dict):
        return found
    for content in body.get("contents", []):
        for part in content.get("parts", []):
            data = part.get("inlineData") or part.get("inline_data")
            if data:
                found.append(hashlib.sha256(base64.urlsafe_b64decode(data["data"])).hexdigest())
    return found


Responder = Callable[[RecordedRequest], "Reply | None"]


class ReplyHandler(BaseHTTPRequestHandler):
    """What the loopback fakes' handlers share: HTTP/1.1 (the SDK keeps connections alive),
    no log lines, and `send_reply`."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def send_reply(self, reply: Reply) -> None:
        if isinstance(reply.body, bytes):
            data, ctype = reply.body, "application/octet-stream"
        elif isinstance(reply.body, str):
            data, ctype = reply.body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(reply.body or {}).encode(), "application/json; charset=UTF-8"
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): that is the point of a slow reply


class _Handler(ReplyHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        fake = self.server.fake
        request = RecordedRequest(self.path, dict(self.headers.items()), body, time.monotonic())
        fake._record(request)
        if not self.path.split("?", 1)[0].endswith(PATH_SUFFIX):
            self.send_reply(error_reply(404, f"no route {self.path}"))
            return
        reply = fake._next_reply(request)
        if reply.delay > 0 and fake._closing.wait(reply.delay):
            return  # the server is shutting down: drop the sleeping request
        self.send_reply(reply)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: Any


class LoopbackFake:
    """A fake HTTP API on 127.0.0.1 and a free port, run in a thread: a context manager whose
    `base_url` the SDK is pointed at. Subclasses set `handler` and `thread_name`."""

    handler: type[BaseHTTPRequestHandler]
    thread_name = "loopback-fake"

    def __init__(self) -> None:
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started: use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), self.handler)
        self._server.fake = self
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeGemini(LoopbackFake):
    """The fake server. `latency` delays every default (and responder) reply (benchmarks use
    1 s). `responder`, when given, answers each request the script does not; returning None
    leaves it to the default."""

    handler = _Handler
    thread_name = "fake-gemini"

    def __init__(
        self,
        default: Reply | None = None,
        *,
        latency: float = 0.0,
        responder: Responder | None = None,
    ) -> None:
        super().__init__()
        self.default = default if default is not None else extraction_reply()
        self.latency = latency
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()

    # --- scripting ---

    def script(self, *replies: Reply) -> FakeGemini:
        """Queue replies for the next requests, in order; afterwards the default answers."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def _next_reply(self, request: RecordedRequest | None = None) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        reply = None
        if self.responder is not None and request is not None:
            reply = self.responder(request)
        if reply is None:
            reply = self.default
        if self.latency and not reply.delay:
            return Reply(reply.status, reply.body, reply.headers, self.latency)
        return reply

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def gaps(self) -> list[float]:
        """Seconds between consecutive request arrivals."""
        times = sorted(r.at for r in self.requests)
        return [b - a for a, b in itertools.pairwise(times)]
