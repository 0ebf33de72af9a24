import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# `tests.fakes` must be importable from papermill kernels too, which start in the repo root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes import FakeExtractor  # noqa: E402  (registers the `fake` extractor)


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
    """Every response a test receives from a real scanbatch server (tests/server_process.py)
    is checked against the server's /openapi.json; a drift fails that test."""
    from urllib.parse import urlsplit

    import requests

    from tests import server_process

    real_send = requests.Session.send
    checkers = []

    def send(self, request, **kwargs):
        response = real_send(self, request, **kwargs)
        if any(request.url.startswith(u + "/") for u in server_process.SERVER_URLS):
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
