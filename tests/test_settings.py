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


def test_kernel_parameters_carry_the_exact_configuration_and_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-secret")
    settings = Settings(
        data_dir=tmp_path / "d", extractor="gemini", gemini_rpm=7, runner_workers=3, port=1
    )
    params = settings.kernel_parameters()
    assert params["data_dir"] == str((tmp_path / "d").resolve())  # the kernel runs elsewhere
    assert params["gemini_rpm"] == 7 and params["gemini_base_url"] == ""
    assert not {"runner_workers", "port", "host", "notebook_timeout"} & set(params)
    assert "AIza-secret" not in repr(params)
    # What the kernel rebuilds is what the server has, whatever SCANBATCH_* says there.
    monkeypatch.setenv("SCANBATCH_GEMINI_RPM", "999")
    again = Settings.from_kernel_parameters(params)
    for name in params:
        expected = getattr(settings, name)
        expected = expected.resolve() if isinstance(expected, Path) else expected
        assert getattr(again, name) == expected, name


def test_a_bad_kernel_parameter_is_named():
    with pytest.raises(ConfigError, match="notebook parameter gemini_rpm"):
        Settings.from_kernel_parameters({"gemini_rpm": 0})


def test_a_kernel_reads_no_setting_from_its_environment(monkeypatch):
    """A parameter left out takes its default, never a SCANBATCH_* variable the kernel
    happens to see; and the environment is read again as usual afterwards."""
    monkeypatch.setenv("SCANBATCH_MATCH_MIN_SCORE", "0.5")
    params = Settings().kernel_parameters()
    del params["match_min_score"]
    default = Settings.model_fields["match_min_score"].default
    assert Settings.from_kernel_parameters(params).match_min_score == default != 0.5
    assert Settings().match_min_score == 0.5
