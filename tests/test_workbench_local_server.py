"""A workbench opened with no server and no token (JupyterLab, a bare `voila`) signs in to the
scanbatch server of this machine, and starts one when none runs (DESIGN: the workbench starts a
server when none is running). Real processes: the server it starts is `scanbatch serve`."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from scanbatch import server_file
from scanbatch.settings import load_settings
from scanbatch.testing.servers import TEST_PYTHONPATH
from scanbatch.workbench import Workbench
from tests.procs import alive, children, wait_gone

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
    found = server_file.read(settings.data_dir)
    if found is not None and alive(found.pid):
        tree = [found.pid, *children(found.pid)]
        os.killpg(found.pid, signal.SIGTERM)
        assert wait_gone(tree, timeout=30) == []


def text(workbench: Workbench) -> str:
    return workbench.signin.message.value


def test_with_no_server_running_the_workbench_starts_one_and_signs_in(machine, monkeypatch):
    # Voilà hands the page's kernel its request, the page's `?token=` included.
    monkeypatch.setenv("QUERY_STRING", "token=the-page-s-own-secret")
    # Two pages opened at once: one server, started by one of them; both signed in.
    pages = [Workbench(), Workbench()]
    assert all(page.join(timeout=150) for page in pages)
    for page in pages:
        assert page.client is not None, text(page)
        assert page.tabs.layout.display == ""  # the tabs show once signed in
        assert page.signin.token.value == ""  # the server's key is never in the page
    started = server_file.read(machine.data_dir)
    assert started is not None and alive(started.pid)
    assert started.token not in text(pages[0]) + text(pages[1])
    # The server outlives the page: the page's token stays behind.
    assert b"the-page-s-own-secret" not in Path(f"/proc/{started.pid}/environ").read_bytes()
    news = [
        f"Started a scanbatch server on this machine (process {started.pid})" in text(p)
        for p in pages
    ]
    assert sorted(news) == [False, True], [text(p) for p in pages]
    for page in pages:
        assert page.signin.url.value == started.url == f"http://127.0.0.1:{machine.port}"
        assert f"Signed in to {started.url}" in text(page)
    assert pages[0].client.review_items(limit=5).total == 0
    assert (machine.data_dir / "server.log").read_text()
    assert (machine.data_dir / "server.log").stat().st_mode & 0o777 == 0o600  # private

    # A page opened later finds that server: no second one.
    later = Workbench()
    assert later.join(timeout=60)
    assert later.client is not None and "Started" not in text(later)
    assert server_file.read(machine.data_dir).pid == started.pid


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


def test_a_relative_data_folder_is_the_repositorys_as_for_make_run(tmp_path, monkeypatch):
    """A notebook's kernel runs in notebooks/, the server it starts in the repository, Flask's
    send_file resolves against its package: the default `data` must name one folder for all,
    resolved once when the settings are read."""
    from pathlib import Path

    from scanbatch.settings import REPO_ROOT, Settings

    monkeypatch.chdir(REPO_ROOT / "notebooks")
    assert Settings().data_dir == REPO_ROOT / "data"
    assert Settings(data_dir=Path("data")).data_dir == REPO_ROOT / "data"
    assert Settings(data_dir=Path("data")).jobs_dir == REPO_ROOT / "data" / "jobs"
    monkeypatch.setenv("SCANBATCH_DATA_DIR", "elsewhere/d")
    assert Settings().data_dir == REPO_ROOT / "elsewhere" / "d"
    assert Settings(data_dir=tmp_path).data_dir == tmp_path.resolve()
