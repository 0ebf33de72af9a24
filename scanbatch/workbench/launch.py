"""`make run`: the API server and the workbench page (Voilà) together on 127.0.0.1.

A fresh musicDirector key is made for the session before the server starts (the store has one
owner at a time), printed with both addresses, handed to the page through the environment, and
revoked when the session ends. The page has a door of its own (scanbatch/workbench/door.py,
named in voila.json): a random token minted per session, printed in the page's address and
nowhere else. Ctrl-C (or SIGTERM) stops both children and then anything they
left running (kernels included), so no process outlives the session."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import psutil

from scanbatch.client import TOKEN_ENV, URL_ENV
from scanbatch.errors import ScanbatchError
from scanbatch.names import Role
from scanbatch.settings import ENV_PREFIX, Settings, load_settings
from scanbatch.workbench import door

ROOT = Path(__file__).resolve().parents[2]
WORKBENCH_NOTEBOOK = ROOT / "notebooks" / "workbench.ipynb"
SESSION_USER = "director"
SESSION_ROLE = Role.MUSIC_DIRECTOR
VOILA_PORT = 8866


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_session_key(settings: Settings) -> tuple[str, str]:
    """(key id, token) of a new key for the session, made while nothing else holds the store."""
    from scanbatch.store import JobStore

    store = JobStore.open(settings.store_path)
    try:
        key, token = store.keys.create(SESSION_USER, SESSION_ROLE)
        return key.id, token
    finally:
        store.close()


def revoke_session_key(settings: Settings, key_id: str) -> None:
    from scanbatch.store import JobStore

    store = JobStore.open(settings.store_path)
    try:
        store.keys.revoke(key_id)
    finally:
        store.close()


PAGE_ORIGINS_ENV = ENV_PREFIX + "PAGE_ORIGINS"


class Session:
    """The two child processes; `stop` ends them and every process they started."""

    def __init__(self, settings: Settings, *, port: int, voila_port: int, demo: bool) -> None:
        self.settings = settings
        self.port = port
        self.voila_port = voila_port or free_port()
        self.demo = demo
        self.server: subprocess.Popen | None = None
        self.voila: subprocess.Popen | None = None
        self.api_url = ""
        # The page's door: whoever opens the page acts with the session's key, so the page
        # answers only this address (see door.py).
        self.page_token = secrets.token_urlsafe(32)
        self.workbench_url = f"http://127.0.0.1:{self.voila_port}/?token={self.page_token}"
        self.key_id = ""
        self.token = ""

    def start(self, out: IO[str] = sys.stdout, timeout: float = 120) -> Session:
        self.key_id, self.token = create_session_key(self.settings)
        server_cmd = [
            sys.executable,
            "-m",
            "scanbatch.workbench.launch",
            "--serve-child",
            "--port",
            str(self.port),
            *(["--demo"] if self.demo else []),
        ]
        # Own sessions: a Ctrl-C at the terminal reaches only this process, which then stops
        # the children in order instead of all of them racing.
        self.server = subprocess.Popen(
            server_cmd,
            cwd=ROOT,
            env={**os.environ, PAGE_ORIGINS_ENV: self.page_origins()},
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        assert self.server.stdout is not None
        while not self.api_url:
            line = self.server.stdout.readline()
            if not line:
                raise ScanbatchError(
                    "The API server stopped while starting; its messages are above."
                )
            if "listening on " in line:
                self.api_url = line.split("listening on ", 1)[1].split()[0]
            else:
                out.write(line)
            if time.monotonic() > deadline:
                raise ScanbatchError("The API server did not start in time")
        threading.Thread(target=_pump, args=(self.server.stdout, out), daemon=True).start()
        # The page's token travels in the environment, not on the command line, which every
        # account of the machine can read; the door takes it out before any kernel starts.
        env = {
            **os.environ,
            URL_ENV: self.api_url,
            TOKEN_ENV: self.token,
            door.TOKEN_ENV: self.page_token,
        }
        self.voila = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voila",
                str(WORKBENCH_NOTEBOOK.relative_to(ROOT)),
                "--no-browser",
                f"--port={self.voila_port}",
                "--Voila.ip=127.0.0.1",
                "--Voila.log_level=WARN",
                "--show_tracebacks=False",
                # A kernel that has already run the notebook waits for the next visitor, so
                # the page shows its widgets without waiting for a kernel to start.
                "--preheat_kernel=True",
            ],
            # voila.json in the repository root (the working directory) holds the page's
            # door and Tornado's settings: the Host check on, the websocket message cap
            # raised over Tornado's 10 MiB so that uploads of many photos work.
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        while not _listening(self.voila_port):
            if self.voila.poll() is not None:
                raise ScanbatchError("The workbench (Voilà) stopped while starting; see above.")
            if time.monotonic() > deadline:
                raise ScanbatchError("The workbench (Voilà) did not start in time")
            time.sleep(0.1)
        return self

    def page_origins(self) -> str:
        """SCANBATCH_PAGE_ORIGINS for the server: the page's own origins (its browser sends
        crates straight to the API), beside any the environment names."""
        ours = [f"http://{host}:{self.voila_port}" for host in ("127.0.0.1", "localhost")]
        given = [o for o in os.environ.get(PAGE_ORIGINS_ENV, "").split(",") if o.strip()]
        return ",".join([*given, *ours])

    def banner(self) -> str:
        return (
            f"\nscanbatch API:  {self.api_url}\n"
            f"workbench:      {self.workbench_url}\n"
            "                (open this in your browser; the page answers only with its token)\n"
            f"API token:      {self.token}\n"
            f"                (user '{SESSION_USER}', {SESSION_ROLE}; the page is already "
            "signed in with it; it stops working when this session ends)\n"
            "Press Ctrl-C to stop both.\n"
        )

    def children(self) -> list[psutil.Process]:
        found = []
        for proc in (self.server, self.voila):
            if proc is None:
                continue
            try:
                root = psutil.Process(proc.pid)
                found += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return found

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM both (each shuts down cleanly: the server finishes its write, Voilà stops
        its kernels), then SIGKILL whatever of their process trees is still there."""
        tree = self.children()
        for proc in (self.voila, self.server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.voila, self.server):
            if proc is None:
                continue
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _gone, alive = psutil.wait_procs(tree, timeout=5)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(alive, timeout=5)
        if self.key_id:
            try:
                revoke_session_key(self.settings, self.key_id)
            except ScanbatchError as exc:
                print(f"Could not revoke the session's key: {exc.message}", file=sys.stderr)


def _pump(stream: IO[str], out: IO[str]) -> None:
    for line in stream:
        out.write(line)
        out.flush()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _serve_child(port: int, demo: bool) -> int:
    import logging

    from scanbatch.web.serve import serve

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    serve(load_settings(port=port), first_key=False, demo=demo)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scanbatch.workbench.launch",
        description="Start the scanbatch API and the workbench page together (what `make run` "
        "does). Ctrl-C stops both.",
    )
    parser.add_argument("--port", type=int, help="API port (default SCANBATCH_PORT, 8000)")
    parser.add_argument(
        "--voila-port", type=int, default=VOILA_PORT, help="workbench port (0: any free one)"
    )
    parser.add_argument(
        "--no-demo", action="store_true", help="do not process the sample batch at start"
    )
    parser.add_argument("--demo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        port = settings.port if args.port is None else args.port
        if args.serve_child:
            return _serve_child(port, args.demo)
        session = Session(settings, port=port, voila_port=args.voila_port, demo=not args.no_demo)
    except ScanbatchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Installed even where SIGINT was ignored at start (e.g. a background job of a script):
    # Ctrl-C, a kill and a closed terminal all take the same way out.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        session.start()
        print(session.banner(), flush=True)
        while session.server.poll() is None and session.voila.poll() is None:  # type: ignore[union-attr]
            time.sleep(0.5)
        print("One of the two stopped; stopping the other.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except ScanbatchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        session.stop()
        print("scanbatch and the workbench stopped.", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
