"""Sign in: the server's address and the user's own API token.

The token lives in the password box only until it is used: after signing in, the box is
emptied and the token is kept by the client object alone, so saving the notebook (with its
widget state) never writes it to disk."""

from __future__ import annotations

import os
from collections.abc import Callable

import ipywidgets as widgets

from scanbatch.client import DEFAULT_URL, TOKEN_ENV, URL_ENV, ApiError, Client
from scanbatch.names import LOCAL_ADMIN_USER
from scanbatch.settings import Settings, load_settings
from scanbatch.workbench import local_server
from scanbatch.workbench.ui import Background, explain, guarded, message_box, show

HOW_TO_GET_A_TOKEN = (
    "Use the token `make run` printed, or ask whoever runs the server for one "
    "(`scanbatch keys create --user <you> --role musicDirector`)."
)


class SignInPanel(widgets.VBox):
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        on_signed_in: Callable[[Client], None] | None = None,
    ) -> None:
        self.on_signed_in = on_signed_in
        self.client: Client | None = None
        self.url = widgets.Text(
            value=url or os.environ.get(URL_ENV) or DEFAULT_URL,
            description="Server",
            layout=widgets.Layout(width="340px"),
        )
        self.token = widgets.Password(
            value=token if token is not None else os.environ.get(TOKEN_ENV, ""),
            description="API token",
            placeholder="sb_…",
            layout=widgets.Layout(width="340px"),
        )
        self.button = widgets.Button(description="Sign in", button_style="primary", icon="sign-in")
        self.message = message_box()
        self.button.on_click(lambda _b: self.sign_in())
        self.background = Background()
        super().__init__(
            [widgets.HBox([self.url, self.token, self.button]), self.message],
            layout=widgets.Layout(padding="4px 0"),
        )
        self.add_class("sb-signin")

    @guarded("message")
    def sign_in(self) -> bool:
        url = self.url.value.strip()
        token = self.token.value.strip()
        if not url.startswith(("http://", "https://")):
            show(
                self.message,
                f"Server must be a web address starting with http:// or https://, "
                f"e.g. {DEFAULT_URL}",
                "error",
            )
            return False
        if not token:
            show(self.message, f"Enter your API token. {HOW_TO_GET_A_TOKEN}", "error")
            return False
        if not self._open(url, token, f"Signed in to {url}."):
            return False
        # Forget the token in the widget: only the client object holds it from here on.
        self.token.value = ""
        self.token.placeholder = "signed in (kept in memory)"
        return True

    def use_local_server(self, settings: Settings | None = None) -> None:
        """Sign in to the scanbatch server of this machine, started first when none runs; in
        the background, since starting one takes a few seconds."""
        show(self.message, "Looking for the scanbatch server on this machine …", "info")
        self.background.run(
            self._use_local_server,
            settings,
            on_error=lambda exc: show(self.message, explain(exc), "error"),
        )

    def _use_local_server(self, settings: Settings | None) -> None:
        def starting(log: str) -> None:
            show(
                self.message,
                "No scanbatch server was running on this machine: starting one (a few "
                f"seconds; its log is {log}) …",
                "info",
            )

        settings = settings or load_settings()
        self.url.value = f"http://{settings.host}:{settings.port}"
        server = local_server.ensure(settings, on_start=starting)
        self.url.value = server.url
        started = (
            f"Started a scanbatch server on this machine (process {server.pid}); it keeps "
            f"running when this page closes (stop it with `kill {server.pid}`). "
            if server.started
            else ""
        )
        if self._open(
            server.url,
            server.token,
            f"{started}Signed in to {server.url} with this machine's own server key: reviews "
            f"are saved as '{LOCAL_ADMIN_USER}'.",
        ):
            self.token.placeholder = "this machine's server key"

    def _open(self, url: str, token: str, signed_in: str) -> bool:
        client = Client(url, token, timeout=15)
        show(self.message, f"Signing in to {url} …", "info")
        try:
            # The queue is what the workbench needs: it answers 401 for a wrong token and
            # 403 for a role that may not audit, with the server's own words.
            client.review_items(limit=1)
        except ApiError as exc:
            show(self.message, _sign_in_problem(exc, url), "error")
            return False
        self.client = client
        show(self.message, signed_in, "ok")
        if self.on_signed_in is not None:
            self.on_signed_in(client)
        return True


def _sign_in_problem(exc: ApiError, url: str) -> str:
    if exc.status == 401:
        return f"The server did not accept this token: {exc.message}. {HOW_TO_GET_A_TOKEN}"
    if exc.status == 403:
        return (
            f"This token may only read scans ({exc.message}). Uploading and reviewing need a "
            f"musicDirector or stationManager token. {HOW_TO_GET_A_TOKEN}"
        )
    if exc.status in (502, 503, 504):
        return exc.message
    return f"The server at {url} refused to sign in ({exc.status}): {exc.message}"
