import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The fake extractors are entry points declared by a dist-info folder in tests/entry_points;
# their classes are in `scanbatch.testing.fakes`. Both must be found here and in every kernel,
# which inherits PYTHONPATH and runs in a job folder.
TEST_PATHS = [str(ROOT), str(ROOT / "tests" / "entry_points")]
for _path in reversed(TEST_PATHS):
    if _path not in sys.path:
        sys.path.insert(0, _path)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [*TEST_PATHS, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
)

from scanbatch.testing.fakes import FakeExtractor  # noqa: E402


@pytest.fixture
def clean_env(monkeypatch):
    """No SCANBATCH_* setting and no Gemini key from the environment running the tests."""
    for name in list(os.environ):
        if name.startswith("SCANBATCH_") or name == "GEMINI_API_KEY":
            monkeypatch.delenv(name)


@pytest.fixture
def fake_extractor():
    FakeExtractor.reset()
    return FakeExtractor()


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from scanbatch.settings import Settings

    for var in ("SCANBATCH_EXTRACTOR", "GEMINI_API_KEY", "SCANBATCH_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    return Settings(data_dir=tmp_path / "data", extractor="fake")


@pytest.fixture
def store(settings):
    from scanbatch.store import JobStore

    s = JobStore.open(settings.store_path)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _responses_match_the_openapi_document(monkeypatch):
    """Every response a test receives from a real scanbatch server (scanbatch/testing/servers.py)
    is checked against the server's /openapi.json; a drift fails that test."""
    from urllib.parse import urlsplit

    import requests

    from scanbatch.testing import servers

    real_send = requests.Session.send
    checkers = []

    def send(self, request, **kwargs):
        response = real_send(self, request, **kwargs)
        if any(request.url.startswith(u + "/") for u in servers.SERVER_URLS):
            if not checkers:
                from tests.webutil import ContractChecker

                checkers.append(ContractChecker())
            checker = checkers[0]
            path = urlsplit(request.url).path
            mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()
            checker.check(
                request.method,
                checker.template_of(path),
                path,
                response.status_code,
                mimetype,
                response.content,
                response.headers,
            )
        return response

    monkeypatch.setattr(requests.Session, "send", send)
    yield
    for checker in checkers:
        checker.assert_clean()


@pytest.fixture
def app(settings):
    """The real Flask app on a temporary store (the runner not started: jobs stay pending).
    Every response a test receives is checked against /openapi.json."""
    from scanbatch.web import create_app, prepare, shutdown
    from tests.webutil import ResponseChecker

    app = create_app(settings)
    prepare(app)  # the catalog seeded, as a server's start does; the runner is not started
    checker = ResponseChecker(app)
    yield app
    shutdown(app)
    checker.assert_clean()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def tokens(app):
    from scanbatch.testing.servers import keys
    from scanbatch.web.services import services_of

    return keys(services_of(app).store)


@pytest.fixture(scope="module")
def server_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("server") / "data"


@pytest.fixture(scope="module")
def server_tokens(server_data_dir):
    """Keys made in the store before the server opens it (one process per DuckDB file)."""
    from scanbatch.store import JobStore
    from scanbatch.testing.servers import keys

    store = JobStore.open(server_data_dir / "scanbatch.duckdb")
    try:
        return keys(store)
    finally:
        store.close()


@pytest.fixture(scope="module")
def live_server(server_data_dir, server_tokens):
    """A real server on 127.0.0.1 with the fake extractor, shared by a test module."""
    from scanbatch.testing.servers import ServerProcess

    srv = ServerProcess(server_data_dir).start()
    yield srv
    srv.stop()
