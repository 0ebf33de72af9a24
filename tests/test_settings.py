from pathlib import Path

import pytest

from scanbatch.errors import ConfigError
from scanbatch.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`SCANBATCH_{name.upper()}`" in readme, name


def test_extractor_defaults_to_gemini_only_with_a_key(monkeypatch):
    monkeypatch.delenv("SCANBATCH_EXTRACTOR", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    assert Settings().extractor == "ocr"
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    assert Settings().extractor == "gemini"
    monkeypatch.setenv("SCANBATCH_EXTRACTOR", " OCR ")
    assert Settings().extractor == "ocr"


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("SCANBATCH_ITEM_CONCURRENCY", "0")
    with pytest.raises(ConfigError, match="SCANBATCH_ITEM_CONCURRENCY"):
        load_settings()


def test_child_env_carries_the_exact_configuration(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "d", extractor="fake", seed_catalog=None)
    env = settings.child_env({"SCANBATCH_SEED_CATALOG": "x.csv", "KEEP": "1"})
    assert env["KEEP"] == "1"
    assert env["SCANBATCH_SEED_CATALOG"] == ""  # None here, so not the inherited x.csv
    assert env["SCANBATCH_DATA_DIR"] == str((tmp_path / "d").resolve())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings() == settings.model_copy(update={"data_dir": (tmp_path / "d").resolve()})
