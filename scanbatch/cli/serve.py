"""`scanbatch serve`: the HTTP API on a production WSGI server."""

from __future__ import annotations

import argparse
import logging

from scanbatch.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="Run the HTTP API (owns the store; runs jobs through papermill)",
        description="Serve the station's batch endpoints with waitress. Resumes unfinished "
        "jobs on start. On a store with no API key, creates one and prints it with a curl "
        "example that submits the shipped sample batch.",
    )
    serve.add_argument("--host", help="address to bind (default SCANBATCH_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default SCANBATCH_PORT, 8000; 0: any)")
    serve.add_argument(
        "--no-first-key", action="store_true", help="do not create a key on an empty store"
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="also process the shipped sample batch (data/sample/) and print what was read",
    )
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from scanbatch.settings import load_settings
    from scanbatch.web.serve import serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        settings = load_settings(**overrides)
    serve(settings, first_key=not args.no_first_key, demo=args.demo)
    return 0
