"""Sign in: the server's address and the user's own API token.

The token lives in the password box only until it is used: after signing in, the box is
emptied and the token is kept by the client object alone, so saving the notebook (with its
widget state) never writes it to disk."""

from __future__ import annotations

import os
from collections.abc import Callable

import ipywidgets as widgets

from scanbatch.client import DEFAULT_URL, TOKEN_ENV, URL_ENV, ApiError, Client
from scanbatch.workbench.ui import guarded, message_box, show

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
        # Forget the token in the widget: only the client object holds it from here on.
        self.token.value = ""
        self.token.placeholder = "signed in (token kept in memory only)"
        show(self.message, f"Signed in to {url}.", "ok")
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
