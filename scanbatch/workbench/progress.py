"""Progress: one bar per job, filling item by item while the server reads it."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets

from scanbatch.client import Client
from scanbatch.models import JobView
from scanbatch.workbench.ui import Background, explain, show


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
        super().__init__([self.bar, self.label])
        self.add_class("sb-job-bar")

    def update(self, view: JobView) -> None:
        done = view.completed_items + view.failed_items
        self.bar.max = max(view.total_items, 1)
        self.bar.value = done
        if view.status.finished:
            failed = f", {view.failed_items} could not be read" if view.failed_items else ""
            self.bar.bar_style = "warning" if view.failed_items else "success"
            self.label.value = (
                f"<b>Done</b>: {view.completed_items} of {view.total_items} record(s) read"
                f"{failed}. They are in the Review tab."
            )
        else:
            self.label.value = f"{done} of {view.total_items} record(s) read …"


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
        view = self.client.wait(bar.job_id, on_progress=bar.update, max_interval=2.0)
        if self.on_job_done is not None:
            self.on_job_done(view)


def _failed(bar: JobBar, exc: BaseException) -> None:
    bar.bar.bar_style = "danger"
    message = widgets.HTML()
    show(message, explain(exc), "error")
    bar.label.value = message.value
