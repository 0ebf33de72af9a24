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
