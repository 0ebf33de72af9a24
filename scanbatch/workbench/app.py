"""The workbench: one widget holding sign-in, upload with progress, review and dashboard."""

from __future__ import annotations

import base64
import os

import ipywidgets as widgets

from scanbatch.client import TOKEN_ENV, URL_ENV, Client
from scanbatch.models import JobView
from scanbatch.workbench.dashboard import DashboardPanel
from scanbatch.workbench.progress import ProgressPanel
from scanbatch.workbench.review import ReviewPanel
from scanbatch.workbench.signin import SignInPanel
from scanbatch.workbench.upload import UploadPanel

# Every file chosen at once reaches the kernel in ONE websocket message; Tornado closes the
# socket on a bigger one, silently, and the page reconnects with nothing uploaded. voila.json
# and the launcher raise the cap to this; the page refuses a bigger selection with a message.
UPLOAD_CAP_BYTES = 512 * 1024 * 1024

_GUARD_JS = """
(function () {
  if (window.__scanbatchUploadGuard) return;
  window.__scanbatchUploadGuard = true;
  function check(e) {
    var input = e.currentTarget;
    var total = 0;
    for (var i = 0; i < input.files.length; i++) total += input.files[i].size;
    var box = document.querySelector('.sb-upload-guard');
    var limit = box ? Number(box.dataset.limit) : Infinity;
    if (total > limit) {
      e.stopImmediatePropagation();
      input.value = '';
      box.textContent = 'These ' + input.files.length + ' photo(s) are ' +
        (total / 1048576).toFixed(0) + ' MB together; the page takes at most ' +
        (limit / 1048576).toFixed(0) + ' MB at once. Nothing was uploaded: choose fewer ' +
        'photos at a time (one crate of up to 10 records is plenty) and send them in turns.';
    } else if (box) {
      box.textContent = '';
    }
  }
  // ipywidgets 8 keeps the upload's <input type=file> out of the page and opens it with
  // click(): catch it there, and listen in the capture phase, which runs before the
  // widget's own listener, so a selection too big is stopped before it is read.
  var click = HTMLInputElement.prototype.click;
  HTMLInputElement.prototype.click = function () {
    if (this.type === 'file' && !this.__scanbatchGuarded) {
      this.__scanbatchGuarded = true;
      this.addEventListener('change', check, true);
    }
    return click.apply(this, arguments);
  };
})();
"""


def upload_guard(limit: int = UPLOAD_CAP_BYTES) -> widgets.HTML:
    """A size check that runs in the browser before the selection is sent: the only place
    that can see a selection too big for the websocket. An HTML widget runs no <script>, but
    an image's onerror handler does."""
    code = base64.b64encode(_GUARD_JS.encode()).decode()
    # A megabyte is left for the message's own envelope (names, types, sizes).
    guard = widgets.HTML(
        '<img alt="" style="display:none" src="data:image/png;base64,AA==" '
        f"onerror=\"eval(atob('{code}'))\">"
        f'<div class="sb-upload-guard" data-limit="{limit - 1024 * 1024}" '
        'style="color:#8a1c1c;font-weight:bold"></div>'
    )
    guard.add_class("sb-guard")
    return guard


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
                widgets.VBox([self.upload, upload_guard(), self.progress]),
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
        for panel in (self.signin, self.upload, self.progress, self.review):
            ok = panel.background.join(timeout) and ok
        return ok
