import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The fake extractors are entry points declared by a dist-info folder in tests/entry_points;
# `tests.fakes` lives in the repository. Both must be found here and in every kernel, which
# inherits PYTHONPATH and runs in a job folder.
TEST_PATHS = [str(ROOT), str(ROOT / "tests" / "entry_points")]
for _path in reversed(TEST_PATHS):
    if _path not in sys.path:
        sys.path.insert(0, _path)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [*TEST_PATHS, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
)

from tests.fakes import FakeExtractor  # noqa: E402


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
