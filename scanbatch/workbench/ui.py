"""Small pieces every panel shares: messages on the page instead of tracebacks, and background
work that tests can wait for."""

from __future__ import annotations

import functools
import html
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import ipywidgets as widgets

from scanbatch.errors import ScanbatchError

log = logging.getLogger("scanbatch.workbench")

_COLOURS = {
    "info": ("#0b4f8a", "#e8f1fb"),
    "ok": ("#1b5e20", "#e8f5e9"),
    "warn": ("#7a4f01", "#fff4e0"),
    "error": ("#8a1c1c", "#fdecea"),
}

F = TypeVar("F", bound=Callable[..., Any])


def message_box() -> widgets.HTML:
    return widgets.HTML(value="", layout=widgets.Layout(margin="4px 0"))


def show(target: widgets.HTML, text: str, kind: str = "info") -> None:
    """Put a message on the page; the text is escaped, so a server message cannot inject HTML."""
    if not text:
        target.value = ""
        return
    fg, bg = _COLOURS[kind]
    target.value = (
        f'<div class="sb-msg sb-{kind}" style="color:{fg};background:{bg};padding:6px 10px;'
        f'border-radius:4px;white-space:pre-wrap">{html.escape(text)}</div>'
    )


def explain(exc: BaseException) -> str:
    if isinstance(exc, ScanbatchError):
        return exc.message
    # Anything else is a bug of ours: the page still says something a person can act on.
    log.exception("workbench error", exc_info=exc)
    return (
        f"Something went wrong ({type(exc).__name__}: {exc}). Try again; if it keeps "
        "happening, tell whoever runs the server."
    )


def guarded(target_attr: str) -> Callable[[F], F]:
    """A widget callback that shows any failure in `self.<target_attr>` instead of raising
    (a raised exception in a callback only reaches the browser's console)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(self, *args, **kwargs)
            except Exception as exc:
                show(getattr(self, target_attr), explain(exc), "error")
                return None

        return inner  # type: ignore[return-value]

    return wrap


class Background:
    """Threads for slow work (uploads, polling, photos), so the page stays responsive; `join`
    lets tests and benchmarks wait until all of it is done."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> threading.Thread:
        def body() -> None:
            try:
                fn(*args)
            except Exception as exc:
                if on_error is not None:
                    on_error(exc)
                else:
                    log.exception("background work failed")

        thread = threading.Thread(target=body, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def join(self, timeout: float = 60.0) -> bool:
        """Wait for every thread started so far (and those they start); True when all ended."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            alive[0].join(min(remaining, 0.5))
