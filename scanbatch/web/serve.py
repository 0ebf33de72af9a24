"""Serving the app with waitress, a production WSGI server (not Flask's development server).

Waitress buffers each request body (in memory up to 512 KiB, then in a temporary file) before
the app sees it, so it is told the same request limit as the app: a request that declares more
is refused before its body is read."""

from __future__ import annotations

import json
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from flask import Flask
from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from scanbatch import private, server_file
from scanbatch.errors import ConfigError
from scanbatch.models import JobView
from scanbatch.settings import SHIPPED_DATA, Settings
from scanbatch.submit import create_job_from_files
from scanbatch.web import create_app, shutdown
from scanbatch.web.uploads import MAX_REQUEST_BYTES, request_too_large_message

FIRST_USER = "director"
FIRST_KERNEL_TIMEOUT = 120  # seconds; a kernel starts in ~2 s on an idle 2-core machine


class JsonErrorTask(ErrorTask):
    """Waitress answers some requests itself before the app sees them (a Content-Length over
    the limit, a malformed request line, headers too large); in plain text by default. This
    keeps the API's one error shape for those too."""

    def execute(self) -> None:
        error = self.request.error
        if error.code == 413:
            message = request_too_large_message(MAX_REQUEST_BYTES)
        else:
            message = f"{error.reason}: {error.body}"
        body = json.dumps({"status": error.code, "message": message}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


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
    svc = app.extensions["scanbatch"]
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
                *(
                    fields.get(name, "")
                    for name in ("artistName", "albumTitle", "labelName", "catalogNumber", "upc")
                ),
                match,
            )
        )
    widths = [min(28, max(len(row[i]) for row in rows)) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell[:28].ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )


def _report_when_done(app: Flask, job_id: str) -> None:
    store = app.extensions["scanbatch"].store
    while True:
        view = store.get_job(job_id)
        if view.status.finished:
            break
        time.sleep(0.5)
    print(f"\nSample job {job_id}: {view.status.value}", flush=True)
    print(job_table(view), flush=True)


def serve(settings: Settings, *, first_key: bool = True, demo: bool = False) -> None:
    private.claim(settings.data_dir)  # before anything is written there, by us or a kernel
    # The runner (and its kernels) starts once the address is ours: a taken port ends here.
    app = create_app(settings, start_runner=False)
    try:
        server = create_server(
            app,
            host=settings.host,
            port=settings.port,
            threads=8,
            max_request_body_size=MAX_REQUEST_BYTES,
            ident="scanbatch",
            # Waitress's defaults (100 connections, 120 s idle) let 99 stalled sockets lock every
            # other client out for two minutes; a partial request holds no thread, only a socket.
            connection_limit=settings.http_connection_limit,
            channel_timeout=settings.http_channel_timeout,
            cleanup_interval=max(1, min(30, int(settings.http_channel_timeout / 2))),
        )
    except OSError as exc:  # the address is taken or not this machine's
        shutdown(app)
        raise ConfigError(
            f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}. Stop "
            "what uses that port, or choose another with SCANBATCH_PORT (or --port)"
        ) from None
    app.extensions["scanbatch"].runner.start()
    server.channel_class = JsonErrorChannel
    base_url = f"http://{settings.host}:{server.effective_port}"
    store = app.extensions["scanbatch"].store
    runtime = server_file.write(
        settings.data_dir, base_url, app.extensions["scanbatch"].admin_token
    )
    if first_key and not any(k.revoked_at is None for k in store.list_keys()):
        _key, token = store.create_key(FIRST_USER, "musicDirector")
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
    # The first job after a start is as quick as any other: the server answers once a warm
    # kernel is ready (or starting one failed: then /healthz says why, and jobs fail in words).
    pool = app.extensions["scanbatch"].runner.pool
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
        threading.Thread(target=_report_when_done, args=(app, job_id), daemon=True).start()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        runtime.unlink(missing_ok=True)
        shutdown(app)
        print("scanbatch stopped", file=sys.stderr)
