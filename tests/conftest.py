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
