"""notebooks/workbench.ipynb runs headless (papermill) against a real server, signs in from
the environment, and its saved copy holds no token."""

from __future__ import annotations

import json

import papermill
import pytest

from scanbatch.store import JobStore
from scanbatch.testing.servers import ROOT, ServerProcess, keys

pytestmark = pytest.mark.slow

WORKBENCH_NOTEBOOK = ROOT / "notebooks" / "workbench.ipynb"


@pytest.fixture(scope="module")
def server_and_token(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("nb") / "data"
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    try:
        token = keys(store)["director"]
    finally:
        store.close()
    srv = ServerProcess(data_dir).start()
    yield srv, token
    srv.stop()


def test_the_workbench_notebook_runs_headless_and_never_saves_the_token(
    server_and_token, tmp_path, monkeypatch
):
    server, token = server_and_token
    monkeypatch.setenv("SCANBATCH_URL", server.url)
    monkeypatch.setenv("SCANBATCH_TOKEN", token)
    out = tmp_path / "workbench.ipynb"
    papermill.execute_notebook(str(WORKBENCH_NOTEBOOK), str(out), cwd=str(ROOT), progress_bar=False)
    text = out.read_text()
    assert token not in text
    # Not even the secret part alone (maxsplit: the secret itself may hold "_").
    assert token.split("_", 2)[2][:12] not in text
    # It did sign in: the widget state saved with the notebook says so.
    assert "Signed in to " in text and server.url in text


def test_the_workbench_notebook_is_thin_and_declares_its_kernel():
    nb = json.loads(WORKBENCH_NOTEBOOK.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) == 1 and len("".join(code[0]["source"]).splitlines()) <= 5
    # Shipped with one output only: the sign-in nbval checks it shows (`make test`), which
    # names no machine and holds no token.
    assert "nbval-check-output" in code[0]["metadata"]["tags"]
    (shown,) = code[0]["outputs"]
    assert shown["data"]["text/plain"].startswith("Workbench(children=(SignInPanel(")
    assert str(ROOT) not in json.dumps(shown) and "sb_" not in json.dumps(shown)
