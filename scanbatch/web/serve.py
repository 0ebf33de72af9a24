"""Serving the app with waitress, a production WSGI server (not Flask's development server).

Waitress buffers each request body (in memory up to 512 KiB, then in a temporary file) before
the app sees it, so it is told the same request limit as the app: a request that declares more
is refused before its body is read."""

from __future__ import annotations

import json
import shlex
import signal
import sys
from pathlib import Path

from waitress import create_server

from scanbatch.settings import SHIPPED_DATA, Settings
from scanbatch.web import create_app, shutdown
from scanbatch.web.uploads import MAX_REQUEST_BYTES

FIRST_USER = "director"


def curl_example(base_url: str, token: str, sample_dir: Path = SHIPPED_DATA / "sample") -> str:
    """A curl command that submits the shipped sample batch."""
    manifest = sample_dir / "manifest.json"
    if not manifest.exists():
        return ""
    truth = json.loads((sample_dir / "truth.json").read_text())
    files = [sample_dir / name for item in truth["items"] for name in item["photos"]]
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


def serve(settings: Settings, *, first_key: bool = True) -> None:
    app = create_app(settings)
    server = create_server(
        app,
        host=settings.host,
        port=settings.port,
        threads=8,
        max_request_body_size=MAX_REQUEST_BYTES,
        ident="scanbatch",
    )
    base_url = f"http://{settings.host}:{server.effective_port}"
    store = app.extensions["scanbatch"].store
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
    print(f"scanbatch listening on {base_url} (extractor: {settings.extractor})", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        shutdown(app)
        print("scanbatch stopped", file=sys.stderr)
