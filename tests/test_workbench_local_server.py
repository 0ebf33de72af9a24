"""A workbench opened with no server and no token (JupyterLab, a bare `voila`) signs in to the
scanbatch server of this machine, and starts one when none runs (DESIGN: the workbench starts a
server when none is running). Real processes: the server it starts is `scanbatch serve`."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from scanbatch import server_file
from scanbatch.settings import load_settings
from scanbatch.workbench import Workbench
from tests.procs import alive, children, wait_gone
from tests.server_process import TEST_PYTHONPATH

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """This machine as the workbench sees it: a data folder and a port, nothing saying which
    server or token; and, afterwards, no server left running."""
    for var in ("SCANBATCH_URL", "SCANBATCH_TOKEN", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SCANBATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SCANBATCH_PORT", str(free_port()))
    monkeypatch.setenv("SCANBATCH_EXTRACTOR", "fake")
    monkeypatch.setenv("PYTHONPATH", TEST_PYTHONPATH)  # the fake extractor, for the server
    settings = load_settings()
    yield settings
    found = server_file.read(settings)
    if found is not None and alive(found.pid):
        tree = [found.pid, *children(found.pid)]
        os.killpg(found.pid, signal.SIGTERM)
        assert wait_gone(tree, timeout=30) == []


def text(workbench: Workbench) -> str:
    return workbench.signin.message.value


def test_with_no_server_running_the_workbench_starts_one_and_signs_in(machine):
    first = Workbench()
    assert first.join(timeout=150)
    assert first.client is not None, text(first)
    assert first.tabs.layout.display == ""  # the tabs show once signed in
    started = server_file.read(machine)
    assert started is not None and alive(started.pid)
    assert f"Started a scanbatch server on this machine (process {started.pid})" in text(first)
    assert first.signin.url.value == started.url == f"http://127.0.0.1:{machine.port}"
    assert first.signin.token.value == ""  # the server's key is never in the page
    assert started.token not in text(first)
    assert first.client.review_items(limit=5).total == 0
    assert "server.log" in str(os.listdir(machine.data_dir))

    # A second page finds that server: no second one.
    second = Workbench()
    assert second.join(timeout=60)
    assert second.client is not None, text(second)
    assert "Started" not in text(second) and f"Signed in to {started.url}" in text(second)
    assert server_file.read(machine).pid == started.pid


def test_a_server_that_cannot_start_is_explained_on_the_page(machine):
    with socket.socket() as taken:  # something else holds the port
        taken.bind(("127.0.0.1", machine.port))
        taken.listen()
        page = Workbench()
        assert page.join(timeout=150)
    assert page.client is None
    assert page.tabs.layout.display == "none"
    message = text(page)
    assert "Could not start a scanbatch server here" in message, message
    assert "server.log" in message
    assert f"Cannot listen on 127.0.0.1:{machine.port}: Address already in use" in message
    assert "Traceback" not in message
