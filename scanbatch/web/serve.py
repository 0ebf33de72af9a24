"""Serving the app with waitress, a production WSGI server (not Flask's development server).

Waitress reads each request whole before the app sees it (the body in memory up to 512 KiB,
then in a temporary file). Its channel is where a body can still be refused unread, so ours
asks the app's own checks there, from the headers (`UploadGate`), and it bounds what a client
that stops reading can hold (`JsonErrorChannel.writable`)."""

from __future__ import annotations

import functools
import gc
import json
import logging
import resource
import shlex
import signal
import socket
import struct
import sys
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask
from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import ErrorTask
from waitress.utilities import Error, RequestEntityTooLarge, build_http_date

from scanbatch import private, server_file
from scanbatch.errors import ConfigError, DiskFull, PayloadTooLarge, ScanbatchError
from scanbatch.models import JobView
from scanbatch.names import FIELDS, Role
from scanbatch.settings import SHIPPED_DATA, Settings
from scanbatch.submit import create_job_from_files
from scanbatch.web import cors, create_app, prepare, shutdown, start
from scanbatch.web.auth import check_write, key_for
from scanbatch.web.services import Services, services_of
from scanbatch.web.uploads import (
    MAX_JSON_BYTES,
    MAX_REQUEST_BYTES,
    UPLOAD_ROUTES,
    json_too_large_message,
    request_too_large_message,
)

if TYPE_CHECKING:
    from waitress.server import BaseWSGIServer

log = logging.getLogger(__name__)

FIRST_USER = "director"
FIRST_KERNEL_TIMEOUT = 120  # seconds; a kernel starts in ~2 s on an idle 2-core machine
THREADS = 8
# Our headers are a few hundred bytes (a token, an Idempotency-Key); waitress's 256 KiB default
# let each of 1000 connections hold a quarter MiB of unfinished headers in memory.
MAX_HEADER_BYTES = 32 * 1024
# Descriptors the process needs besides its client connections: the store, kernels' sockets,
# uploads being staged, photos being sent, logs.
FD_RESERVE = 512
# Methods whose routes take no body (and the only ones public routes have): a body sent with
# them is only held to the JSON limit, every other method's body needs a key first.
BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"status": status, "message": message}).encode()


def _cors(gate: UploadGate, request: Any) -> list[tuple[str, str]]:
    return cors.headers(gate.services.settings, request.path, request.headers.get("ORIGIN"))


class Refusal(Error):
    """A request the gate refused, carried to JsonErrorTask when it must wait for the
    connection's earlier responses."""

    def __init__(self, exc: ScanbatchError) -> None:
        super().__init__(exc.message)
        self.code = exc.status
        self.reason = HTTPStatus(exc.status).phrase


class JsonErrorTask(ErrorTask):
    """Waitress answers some requests itself before the app sees them (a Content-Length over
    the limit, a malformed request line, headers too large); in plain text by default. This
    keeps the API's one error shape for those too."""

    def execute(self) -> None:
        error = self.request.error
        if isinstance(error, Refusal):
            message = error.body
        elif error.code == 413:
            message = request_too_large_message(MAX_REQUEST_BYTES)
        else:
            message = f"{error.reason}: {error.body}"
        body = _error_body(error.code, message)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        gate = getattr(self.channel, "gate", None)
        if gate is not None:  # the page's browser must be able to read why (scanbatch.web.cors)
            self.response_headers.extend(_cors(gate, self.request))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class UploadGate:
    """The app's own answer to a request's headers about its body, asked before any of the
    body is read: a body is read only for a caller with a valid key (else the app's 401), an
    upload only for one whose role may write (the app's 403), and only within its route's
    limit (413 naming it). The same functions as the app's (`key_for`, `check_write`), so the
    two cannot disagree; a request that passes is still checked by the app."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @staticmethod
    def limit(method: str, path: str) -> int:
        return MAX_REQUEST_BYTES if (method, path) in UPLOAD_ROUTES else MAX_JSON_BYTES

    @classmethod
    def too_large(cls, method: str, path: str) -> PayloadTooLarge:
        limit = cls.limit(method, path)
        if limit == MAX_REQUEST_BYTES:
            return PayloadTooLarge(request_too_large_message(limit))
        return PayloadTooLarge(json_too_large_message(limit))

    def refusal(
        self, method: str, path: str, authorization: str, declared: int | None
    ) -> ScanbatchError | None:
        """Why the body may not be read, or None. `declared` is its Content-Length (None for
        a chunked body, whose size is counted as it arrives)."""
        if method not in BODILESS:
            try:
                key = key_for(authorization, self.services)
                if (method, path) in UPLOAD_ROUTES:
                    check_write(key)
            except ScanbatchError as exc:
                return exc
            except Exception:  # the store failing must not end the server's loop
                log.exception("checking the key of %s %s", method, path)
                return ScanbatchError("Internal server error; the details are in the server log")
        if declared is not None and declared > self.limit(method, path):
            return self.too_large(method, path)
        return None


class GatedParser(HTTPRequestParser):
    """Waitress's request parser, which asks the gate the moment the headers are in. A refused
    request is marked complete with none of its body kept, and what followed the headers is
    dropped: the channel answers it and closes."""

    limit: int | None = None  # a chunked body's limit, counted while it is read

    def __init__(self, adj: Any, channel: JsonErrorChannel) -> None:
        super().__init__(adj)
        self.channel = channel

    def received(self, data: bytes) -> int:
        if self.completed:
            return 0
        in_headers = not self.headers_finished
        consumed = super().received(data)
        gate = self.channel.gate
        if (
            in_headers
            and self.headers_finished
            and self.body_rcv is not None
            and (self.error is None or isinstance(self.error, RequestEntityTooLarge))
        ):
            refusal = gate.refusal(
                self.command,
                self.path,
                self.headers.get("AUTHORIZATION", ""),
                None if self.chunked else self.content_length,
            )
            if refusal is not None:
                return self._refuse(refusal, data, consumed)
            self.limit = gate.limit(self.command, self.path)
        elif self.chunked and self.limit is not None and self.body_bytes_received > self.limit:
            return self._refuse(gate.too_large(self.command, self.path), data, len(data))
        return consumed

    def _refuse(self, refusal: ScanbatchError, data: bytes, consumed: int) -> int:
        self.completed = True
        self.expect_continue = False  # no 100 Continue: the client must not send the body
        if self.body_rcv is not None:
            self.body_rcv.getbuf().close()
            self.body_rcv = None
        if self.channel.refuse(refusal, self, dropped=len(data) - consumed):
            self.empty = True  # answered already: nothing for a task thread to do
        else:
            self.error = Refusal(refusal)
        return len(data)


class JsonErrorChannel(HTTPChannel):
    """Waitress's connection, with three changes:

    - A request's body is refused from its headers (`UploadGate`) before waitress stores any
      of it. Answering from the headers is what a channel check can do and a WSGI app cannot:
      waitress (like any server that buffers) hands the app a request only once its body is
      whole, and a server that streams the body to the app would need a thread per upload in
      progress, where this costs none. The refusal is written by the server's loop, not a
      task thread, so it is answered within milliseconds even while all threads are busy.
    - After a refusal the connection closes gracefully: the answer, then FIN, then whatever
      the client still sends of its body is read and dropped (never stored) until it has all
      arrived or `channel_timeout` passes. Closing at once would make the kernel reset the
      connection over the unread bytes, and a client that sends its whole body before reading
      (most do, without `Expect: 100-continue`) would see a reset instead of the 401.
    - A client that accepts none of a pending response for `send_timeout` seconds is reset.
      Waitress makes a task thread wait, without a time limit, while more than
      `outbuf_high_watermark` bytes of its response are unsent, and never closes a connection
      whose response is pending; eight stalled readers took all eight threads.
    """

    error_task_class = JsonErrorTask

    def __init__(
        self,
        server: Any,
        sock: socket.socket,
        addr: Any,
        adj: Any,
        map: dict | None = None,  # waitress passes it by this name
        *,
        gate: UploadGate,
        send_timeout: float,
    ) -> None:
        self.gate = gate
        self.send_timeout = send_timeout
        self._refused = False
        self._lingering = False
        self._linger_left: int | None = None  # body bytes still to come, when declared
        self._linger_until = 0.0
        super().__init__(server, sock, addr, adj, map)

    def parser_class(self, adj: Any) -> GatedParser:  # waitress calls self.parser_class(adj)
        return GatedParser(adj, self)

    # The server's loop thread, with requests_lock held (from HTTPChannel.received).
    def refuse(self, refusal: ScanbatchError, request: GatedParser, dropped: int) -> bool:
        """Answer a refused request now if no earlier one of this connection is still being
        answered (then True), else leave it to JsonErrorTask, in order."""
        self._refused = True
        if not request.chunked:
            self._linger_left = max(0, request.content_length - dropped)
        log.info(
            "%s %s refused from its headers: %s %s",
            request.command,
            request.path,
            refusal.status,
            refusal.message,
        )
        if self.requests:
            return False
        body = _error_body(refusal.status, refusal.message)
        version = "1.0" if request.version == "1.0" else "1.1"
        allow = "".join(f"{k}: {v}\r\n" for k, v in _cors(self.gate, request))
        head = (
            f"HTTP/{version} {refusal.status} {HTTPStatus(refusal.status).phrase}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Content-Type: application/json\r\n"
            f"{allow}"
            "Connection: close\r\n"
            f"Date: {build_http_date(time.time())}\r\n"
            f"Server: {self.adj.ident}\r\n\r\n"
        )
        payload = head.encode("latin-1") + body
        with self.outbuf_lock:
            self.outbufs[-1].append(payload)
            self.current_outbuf_count += len(payload)
            self.total_outbufs_len += len(payload)
            self._flush_some()
        self.close_when_flushed = True
        return True

    def handle_close(self) -> None:
        if self.socket is None:  # closed already (waitress may ask twice)
            return
        if self._refused and not self._lingering and self.connected and self._linger_left != 0:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self._lingering = True
                self.will_close = self.close_when_flushed = False
                self._linger_until = time.monotonic() + self.adj.channel_timeout
                return
        super().handle_close()

    def readable(self) -> bool:
        return True if self._lingering else super().readable()

    def writable(self) -> bool:
        if self._lingering:
            return self.will_close  # set by the server's idle check: time to close
        pending = super().writable()
        if (
            self.total_outbufs_len
            and not self.will_close
            and time.time() - self.last_activity > self.send_timeout
        ):
            self._reset_stalled()
        return pending or self.will_close

    def _reset_stalled(self) -> None:
        log.warning(
            "resetting the connection of %s: it accepted none of its response for %g s "
            "(SCANBATCH_HTTP_SEND_TIMEOUT)",
            self.addr,
            self.send_timeout,
        )
        self.will_close = True
        try:
            # A reset, not a FIN: the response is cut short, and the kernel must drop what it
            # holds for this client rather than keep retrying. Shutting the socket down makes
            # the loop see it (a full send buffer never turns writable); the loop then closes
            # it, which wakes the task thread waiting to write (ClientDisconnected).
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def handle_read(self) -> None:
        if not self._lingering:
            super().handle_read()
            return
        data = self.recv(self.adj.recv_bytes * 8)  # dropped: a refused body is never kept
        if self.socket is None:  # recv saw the end of the stream and closed
            return
        if self._linger_left is not None:
            self._linger_left -= len(data)
        done = self._linger_left is not None and self._linger_left <= 0
        if done or time.monotonic() > self._linger_until:
            super().handle_close()


SAMPLE_DIR = SHIPPED_DATA / "sample"


def sample_photos(sample_dir: Path = SAMPLE_DIR) -> list[Path]:
    """The shipped sample's photos in manifest order (as listed in its truth.json)."""
    truth = json.loads((sample_dir / "truth.json").read_text())
    return [sample_dir / name for item in truth["items"] for name in item["photos"]]


def curl_example(base_url: str, token: str, sample_dir: Path = SAMPLE_DIR) -> str:
    """A curl command that submits the shipped sample batch."""
    manifest = sample_dir / "manifest.json"
    if not manifest.exists():
        return ""
    files = sample_photos(sample_dir)
    parts = [f"-F images=@{shlex.quote(_shown(f))}" for f in files]
    return (
        f"curl -s -H 'Authorization: Bearer {token}' "
        # `<file` sends the file's content as the field's value (not as an upload).
        f"-F {shlex.quote('manifest=<' + _shown(manifest))} "
        + " ".join(parts)
        + f" {base_url}/library/scan/batch"
    )


def _shown(path: Path) -> str:
    """A path as short as it can be from here (the README's examples run from the repo)."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def submit_sample(app: Flask, sample_dir: Path = SAMPLE_DIR) -> str:
    """Queue the shipped sample batch as a job of the first user, as if it had been POSTed."""
    svc = services_of(app)
    job_id, _manifest = create_job_from_files(
        svc.store,
        svc.settings.jobs_dir,
        FIRST_USER,
        (sample_dir / "manifest.json").read_text(),
        sample_photos(sample_dir),
        extractor=svc.settings.extractor,
    )
    svc.runner.submit(job_id)
    return job_id


def job_table(view: JobView) -> str:
    """The fields read per item, for a person at a terminal."""
    rows = [("item", "status", "artist", "title", "label", "catalog no", "UPC", "match")]
    for r in view.results:
        fields = {name: f["value"] for name, f in (r.extraction or {}).items()}
        match = (
            f"#{r.matched_album_id} {r.matched_album.album_title}"
            if r.matched_album
            else (r.error_message or "-")
        )
        rows.append(
            (
                str(r.item_index),
                r.status.value,
                *(fields.get(name, "") for name in FIELDS if name != "reviewText"),
                match,
            )
        )
    widths = [min(28, max(len(row[i]) for row in rows)) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell[:28].ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )


def _report_when_done(app: Flask, job_id: str, stopping: threading.Event) -> None:
    # `stopping` is set (and this thread joined) before the store closes, so a stop during
    # the demo job never has this read a closed store.
    store = services_of(app).store
    while True:
        view = store.get_job(job_id)
        if view.status.finished:
            break
        if stopping.wait(0.5):
            return
    print(f"\nSample job {job_id}: {view.status.value}", flush=True)
    print(job_table(view), flush=True)


def build_server(app: Flask, settings: Settings) -> BaseWSGIServer:
    """The waitress server for `app`, listening (not yet serving) on the settings' address."""
    limit = _fit_connection_limit(settings.http_connection_limit)
    server = create_server(
        app,
        host=settings.host,
        port=settings.port,
        threads=THREADS,
        # The channel refuses an over-limit upload from its headers; this is the backstop for
        # a chunked one (waitress refuses at >= its limit, the app past it).
        max_request_body_size=MAX_REQUEST_BYTES + 1,
        max_request_header_size=MAX_HEADER_BYTES,
        ident="scanbatch",
        # Waitress's defaults (100 connections, 120 s idle) let 99 stalled sockets lock every
        # other client out for two minutes; a partial request holds no thread, only a socket.
        connection_limit=limit,
        channel_timeout=settings.http_channel_timeout,
        cleanup_interval=max(1, min(30, int(settings.http_channel_timeout / 2))),
        outbuf_high_watermark=settings.http_send_buffer,
        # select() cannot watch a descriptor numbered 1024 or more: with 1000 connections
        # open beside the store and the kernels, the server's loop ended with a ValueError.
        asyncore_use_poll=True,
    )
    server.channel_class = functools.partial(
        JsonErrorChannel,
        gate=UploadGate(services_of(app)),
        send_timeout=settings.http_send_timeout,
    )
    return server


def _fit_connection_limit(wanted: int) -> int:
    """The connection limit the process's descriptor limit allows: the soft limit is raised
    towards the hard one (commonly 1024 and 4096+), and the connection limit lowered, with a
    warning, when even that is too few. Past it, accept() fails with EMFILE in a busy loop and
    so does every file the app opens."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fitted = max(10, soft - FD_RESERVE)
        print(
            f"Only {soft} open files are allowed (ulimit -n): accepting {fitted} connections "
            f"at once, not {wanted} (SCANBATCH_HTTP_CONNECTION_LIMIT)",
            file=sys.stderr,
        )
        return fitted
    return wanted


def serve(settings: Settings, *, first_key: bool = True, demo: bool = False) -> None:
    private.claim(settings.data_dir)  # before anything is written there, by us or a kernel
    app = create_app(settings)
    prepare(app)
    # The runner (and its kernels) starts once the address is ours: a taken port ends here.
    try:
        server = build_server(app, settings)
    except OSError as exc:  # the address is taken or not this machine's
        shutdown(app)
        raise ConfigError(
            f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}. Stop "
            "what uses that port, or choose another with SCANBATCH_PORT (or --port)"
        ) from None
    start(app)
    # What is alive now (modules, the app, the catalog snapshot) lives as long as the server:
    # out of the collector's reach, a full collection no longer walks it, which took the
    # metrics route's p99 from ~2x its median to ~1.3x at 100,000 records (measured).
    gc.collect()
    gc.freeze()
    svc = services_of(app)
    stopping, reporter, signalled = threading.Event(), None, threading.Event()

    def stop(signum: int, frame: object) -> None:
        # Once: a second signal while stopping (Ctrl-C pressed twice, or a launcher and a
        # `pkill` both) would break the shutdown half-way, with a traceback. Still handled,
        # not SIG_IGN: switching to that with signals pending prints a race warning.
        if not signalled.is_set():
            signalled.set()
            raise KeyboardInterrupt

    # From here on a signal runs the whole shutdown below: the runner has started, so even a
    # SIGTERM right after the "listening" line (what a supervisor waits for) must stop it.
    # The caller's handlers come back when it returns: an in-process serve (a test, a
    # notebook) must not leave a Ctrl-C that stops nothing.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    base_url = f"http://{settings.host}:{server.effective_port}"
    runtime = None
    try:
        try:
            runtime = server_file.write(settings.data_dir, base_url, svc.admin_token)
        except DiskFull as exc:
            # A server restarted on a full disk still answers GETs, and 507 to writes, until
            # space is freed; only local commands cannot find it (they say the store is held).
            print(f"{exc.message} ({server_file.NAME} not written)", file=sys.stderr)
        if first_key and not any(k.revoked_at is None for k in svc.store.keys.list_all()):
            _key, token = svc.store.keys.create(FIRST_USER, Role.MUSIC_DIRECTOR)
            print(f"Created a first API key for user '{FIRST_USER}' (musicDirector). Keep it:")
            print(f"  {token}")
            example = curl_example(base_url, token)
            if example:
                print("Submit the sample batch:")
                print(f"  {example}")
                print(
                    f"Then poll: curl -s -H 'Authorization: Bearer {token}' "
                    f"{base_url}/library/scan/batch/<jobId>"
                )
        # The first job after a start is as quick as any other: the server answers once a
        # warm kernel is ready (or starting one failed: then /healthz says why, and jobs fail
        # in words).
        pool = svc.runner.pool
        if not pool.wait_first(FIRST_KERNEL_TIMEOUT):
            print(
                f"No notebook kernel was ready after {FIRST_KERNEL_TIMEOUT} s; answering anyway "
                "(jobs wait for one; see /healthz)",
                file=sys.stderr,
            )
        elif pool.last_failure:
            print(f"A notebook kernel failed to start: {pool.last_failure}", file=sys.stderr)
        print(f"scanbatch listening on {base_url} (extractor: {settings.extractor})", flush=True)
        if demo:
            job_id = submit_sample(app)
            print(f"Processing the sample batch (data/sample/) as job {job_id} ...", flush=True)
            reporter = threading.Thread(
                target=_report_when_done, args=(app, job_id, stopping), daemon=True
            )
            reporter.start()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if runtime is not None:
            runtime.unlink(missing_ok=True)
        stopping.set()
        if reporter is not None:
            reporter.join()
        shutdown(app)
        print("scanbatch stopped", file=sys.stderr)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
