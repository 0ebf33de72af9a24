"""The workbench: one widget holding sign-in, upload with progress, review and dashboard."""

from __future__ import annotations

import os

import ipywidgets as widgets

from scanbatch.client import TOKEN_ENV, URL_ENV, Client
from scanbatch.models import JobView
from scanbatch.workbench.dashboard import DashboardPanel
from scanbatch.workbench.progress import ProgressPanel
from scanbatch.workbench.review import ReviewPanel
from scanbatch.workbench.signin import SignInPanel
from scanbatch.workbench.upload import UploadPanel

# The photos no longer travel through the page's websocket (the browser posts them to the API
# itself), so its messages stay small: the largest are the review tab's photos, a few MB each.
# voila.json sets this cap (Tornado's default is 10 MiB).
SOCKET_CAP_BYTES = 16 * 1024 * 1024


class Workbench(widgets.VBox):
    """Sign in, upload and watch, review, measure. Talks to the server only through
    `scanbatch.client.Client`."""

    def __init__(
        self, url: str | None = None, token: str | None = None, *, sign_in: bool | None = None
    ) -> None:
        self.signin = SignInPanel(url, token, on_signed_in=self._signed_in)
        self.upload = UploadPanel(on_submitted=self._submitted)
        self.progress = ProgressPanel(on_job_done=self._job_done)
        self.review = ReviewPanel()
        self.dashboard = DashboardPanel()
        self.tabs = widgets.Tab(
            children=[
                widgets.VBox([self.upload, self.progress]),
                self.review,
                self.dashboard,
            ],
            titles=("Upload", "Review", "Dashboard"),
            layout=widgets.Layout(display="none"),
        )
        self.tabs.observe(self._on_tab, "selected_index")
        # The notebook's first cell is the page's title and introduction.
        super().__init__([self.signin, self.tabs], layout=widgets.Layout(padding="8px"))
        self.add_class("sb-workbench")
        # `make run` hands the page its URL and token: sign in at once, so the token never
        # sits in the password box (and so never in saved widget state).
        given = url or token or os.environ.get(URL_ENV) or os.environ.get(TOKEN_ENV)
        if sign_in is None and not given:
            # Nothing says which server: this machine's, started here when none runs.
            self.signin.use_local_server()
            return
        if sign_in is None:
            sign_in = bool(os.environ.get(TOKEN_ENV) and os.environ.get(URL_ENV)) or bool(token)
        if sign_in and self.signin.token.value:
            self.signin.sign_in()

    @property
    def client(self) -> Client | None:
        return self.signin.client

    def _signed_in(self, client: Client) -> None:
        for panel in (self.upload, self.progress, self.review, self.dashboard):
            panel.client = client
        self.review.my_user = None
        self.tabs.layout.display = ""
        if self.tabs.selected_index == 1:  # otherwise the queue loads when its tab opens
            self.review.refresh()

    def _submitted(self, job_id: str, total: int) -> None:
        self.progress.track(job_id, total)

    def _job_done(self, view: JobView) -> None:
        # The new records join the list at once; one is leased only for a director on the
        # Review tab (`next` hands it out), never behind their back on the Upload tab.
        self.review.refresh(next_record=self.tabs.selected_index == 1)

    def _on_tab(self, change: dict) -> None:
        if change["new"] == 1:
            self.review.refresh()  # the record open stays open
        elif change["new"] == 2:
            self.dashboard.refresh()

    def join(self, timeout: float = 120.0) -> bool:
        """Wait for every upload, poll and photo load in flight (tests, benchmarks)."""
        ok = True
        for panel in (self.signin, self.progress, self.review):
            ok = panel.background.join(timeout) and ok
        return ok
