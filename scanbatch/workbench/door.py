"""The workbench page's door: Voilà's identity provider (named in voila.json).

Voilà has no login of its own and answers any Host, so a page signed in to the API (with the
director's token, or as the server's local admin) would serve whoever reaches its port, and any
web site the director visits through DNS rebinding. Behind this door the page answers only
requests that carry its token (as Jupyter does: `?token=` in the printed address, then a
cookie), and only under its own name: `Host` 127.0.0.1:PORT or localhost:PORT, and an `Origin`,
when a browser sends one, of the page itself. Every refusal is a 403 that says what to open;
Voilà's default for a missing token, a redirect to a password form, would only confuse.

The token comes from `Voila.token`, else from `JUPYTER_TOKEN` (which `make run` sets: an
environment variable is not shown to other accounts the way a command line is), else a random
one that Voilà prints with its address. `JUPYTER_TOKEN` is removed from the environment once
read, so the page's kernels, and any server they start, never inherit it."""

from __future__ import annotations

import html
import json
import os
import secrets
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.base.handlers import APIHandler
from jupyter_server.log import log_request
from tornado import web
from tornado.websocket import WebSocketHandler

TOKEN_ENV = "JUPYTER_TOKEN"
LOCAL_NAMES = ("127.0.0.1", "localhost")
NO_TOKEN = (
    "This page opens only with its token. Open the workbench address printed by `make run` "
    "(it ends in ?token=…); when you started Voilà yourself, the address it printed."
)

# Self-contained: nothing from another site, nothing of the request echoed back.
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>scanbatch workbench: 403</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>403: not without the page's token</h1>
<p>{message}</p>
</body></html>
"""


def wrong_host(port: int) -> str:
    return (
        f"This page answers only at http://127.0.0.1:{port}/ or http://localhost:{port}/. Open "
        "the workbench address printed by `make run`."
    )


def wrong_origin(port: int) -> str:
    return (
        f"Only the page itself (http://127.0.0.1:{port} or http://localhost:{port}) may use this "
        "page's kernel; a request from another site is refused."
    )


class PageDoor(IdentityProvider):
    def __init__(self, **kwargs: Any) -> None:
        given = kwargs.pop("token", "") or ""
        from_env = os.environ.pop(TOKEN_ENV, "")
        super().__init__(**kwargs)
        self.token = given or from_env or secrets.token_urlsafe(32)
        # Voilà prints the address with the token only when it made the token up itself.
        self.token_generated = not (given or from_env)
        # Voilà logs requests with Tornado's default, whole URI and all (`?token=` included):
        # Jupyter's own request log scrubs tokens. Voilà builds its Tornado settings after
        # this object and applies its `tornado_settings` last, so this is where it can go.
        parent = kwargs.get("parent")
        if parent is not None and parent.has_trait("tornado_settings"):
            parent.tornado_settings = {
                **parent.tornado_settings,
                "log_function": partial(log_request, record_prometheus_metrics=False),
            }

    @property
    def login_available(self) -> bool:  # no password form: the token is the only way in
        return False

    @property
    def logout_available(self) -> bool:
        return False

    async def _get_user(self, handler: web.RequestHandler) -> User | None:
        port = _port(handler)
        own = {f"{name}:{port}" for name in LOCAL_NAMES}
        if handler.request.host.lower() not in own:
            _refuse(handler, wrong_host(port))
        origin = handler.request.headers.get("Origin")
        if origin is not None and urlsplit(origin.lower()).netloc not in own:
            _refuse(handler, wrong_origin(port))
        user = await super()._get_user(handler)
        if user is None:
            _refuse(handler, NO_TOKEN)
        return user


def _refuse(handler: web.RequestHandler, message: str) -> None:
    """Answer 403 with the sentence, as a page for a browser and as JSON for the kernel API.
    Written here, not raised as an HTTPError: Voilà's error page shows no message, and
    Tornado would log the refused URI whole, token included."""
    handler.current_user = handler._jupyter_current_user = None  # type: ignore[attr-defined]
    handler.clear()
    handler.set_status(403)
    if isinstance(handler, APIHandler | WebSocketHandler):
        handler.set_header("Content-Type", "application/json")
        raise web.Finish(json.dumps({"status": 403, "message": message}))
    handler.set_header("Content-Type", "text/html; charset=utf-8")
    raise web.Finish(PAGE.format(message=html.escape(message)))


def _port(handler: web.RequestHandler) -> int:
    """The port this request came in on (Voilà may have moved off a taken one)."""
    stream = getattr(handler.request.connection, "stream", None)
    try:
        return int(stream.socket.getsockname()[1])  # type: ignore[union-attr]
    except (AttributeError, OSError):
        return int(handler.settings["voila"].port)
