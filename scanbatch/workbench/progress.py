"""Progress: one bar per job, filling item by item while the server reads it. A backlog job
waiting for Google's Batch API says so, with the batch's state, instead of a bar that does not
move."""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as widgets

from scanbatch.client import ApiError, Client
from scanbatch.models import BacklogState, JobMode, JobView
from scanbatch.workbench.ui import Background, explain, show

# A backlog job's states while its records are with Google's Batch API (or on their way).
AT_GOOGLE = frozenset(
    {BacklogState.WAITING, BacklogState.SENDING, BacklogState.SUBMITTED, BacklogState.RUNNING}
)


class JobBar(widgets.HBox):
    def __init__(self, job_id: str, total: int) -> None:
        self.job_id = job_id
        self.bar = widgets.IntProgress(
            value=0,
            min=0,
            max=max(total, 1),
            description=f"Job {job_id[:8]}",
            bar_style="info",
            layout=widgets.Layout(width="420px"),
        )
        self.label = widgets.HTML(f"0 of {total} record(s) read — waiting for the server …")
        self.at_google = False  # a backlog job whose records are at Google's Batch API
        super().__init__([self.bar, self.label])
        self.add_class("sb-job-bar")

    def update(self, view: JobView) -> None:
        done = view.completed_items + view.failed_items
        self.bar.max = max(view.total_items, 1)
        self.bar.value = done
        backlog = view.backlog if view.mode == JobMode.BACKLOG else None
        self.at_google = (
            backlog is not None and not view.status.finished and backlog.state in AT_GOOGLE
        )
        self.bar.layout.display = "none" if self.at_google else ""
        if self.at_google:
            assert backlog is not None
            where = f", Google batch {backlog.batch}" if backlog.batch else ""
            self.label.value = (
                f"<b>Job {self.job_id[:8]}</b>: {view.total_items} record(s) waiting for "
                f"Google's Batch API (state: {backlog.state}{where}) — within 24 hours, "
                "usually much sooner"
            )
            return
        if view.status.finished:
            failed = f", {view.failed_items} could not be read" if view.failed_items else ""
            self.bar.bar_style = "warning" if view.failed_items else "success"
            self.label.value = (
                f"<b>Done</b>: {view.completed_items} of {view.total_items} record(s) read"
                f"{failed}. They are in the Review tab."
            )
        else:
            self.label.value = f"{done} of {view.total_items} record(s) read …"
        if backlog is not None and backlog.note and not view.status.finished:
            self.label.value += f" <i>{html.escape(backlog.note)}</i>"


class ProgressPanel(widgets.VBox):
    def __init__(self, *, on_job_done: Callable[[JobView], None] | None = None) -> None:
        self.client: Client | None = None
        self.on_job_done = on_job_done
        self.background = Background()
        self.bars: dict[str, JobBar] = {}
        super().__init__([])

    def track(self, job_id: str, total: int) -> JobBar:
        bar = JobBar(job_id, total)
        self.bars[job_id] = bar
        self.children = (*self.children, bar)
        self.background.run(self._follow, bar, on_error=lambda exc: _failed(bar, exc))
        return bar

    def _follow(self, bar: JobBar) -> None:
        assert self.client is not None
        # `wait` sleeps as long as the server's Retry-After says (at most 2 s), so the bar
        # moves item by item without hammering the server.
        while True:
            try:
                view = self.client.wait(bar.job_id, on_progress=bar.update, max_interval=2.0)
            except ApiError as exc:
                if exc.status == 504 and bar.at_google:
                    continue  # Google takes up to 24 hours: this page waits with it
                raise
            break
        if self.on_job_done is not None:
            self.on_job_done(view)


def _failed(bar: JobBar, exc: BaseException) -> None:
    bar.bar.bar_style = "danger"
    message = widgets.HTML()
    show(message, explain(exc), "error")
    bar.label.value = message.value
