import re
from pathlib import Path

import pytest

from scanbatch.errors import ConfigError
from scanbatch.extractors import (
    check_extractor,
    create_extractor,
    extractor_names,
    get_extractor_class,
)
from scanbatch.extractors.base import env_options, env_prefix
from scanbatch.notebook_parameters import job_parameters
from scanbatch.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`SCANBATCH_{name.upper()}`" in readme, name
    for extractor in extractor_names():
        for option in env_options(get_extractor_class(extractor)):
            assert f"`{env_prefix(extractor)}{option.upper()}`" in readme, option


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
    monkeypatch.setenv("SCANBATCH_GEMINI_RPM", "7")
    monkeypatch.delenv("SCANBATCH_GEMINI_BASE_URL", raising=False)
    settings = Settings(data_dir=tmp_path / "d", extractor="gemini", runner_workers=3, port=1)
    params = job_parameters(settings)
    assert params["data_dir"] == str((tmp_path / "d").resolve())  # the kernel runs elsewhere
    options = params["extractor_options"]
    assert options["rpm"] == 7 and options["base_url"] is None
    assert not {"runner_workers", "port", "host", "notebook_timeout"} & set(params)
    assert "AIza-secret" not in repr(params)
    # What the kernel rebuilds is what the server has, whatever SCANBATCH_* says there.
    monkeypatch.setenv("SCANBATCH_GEMINI_RPM", "999")
    again = Settings.from_kernel_parameters(params)
    for name in settings.kernel_parameters():
        expected = getattr(settings, name)
        expected = expected.resolve() if isinstance(expected, Path) else expected
        assert getattr(again, name) == expected, name
    rebuilt = check_extractor("gemini", again, **options)
    assert rebuilt == check_extractor("gemini", settings) and rebuilt.rpm == 7


def test_a_bad_kernel_parameter_is_named():
    with pytest.raises(ConfigError, match="notebook parameter item_concurrency"):
        Settings.from_kernel_parameters({"item_concurrency": 0})
    with pytest.raises(ConfigError, match="Extractor 'ocr' option 'max_side'"):
        check_extractor("ocr", Settings.from_kernel_parameters({}), max_side=1)


def test_each_extractor_reads_its_own_variables_and_names_a_bad_one(monkeypatch):
    monkeypatch.setenv("SCANBATCH_OCR_MAX_SIDE", "800")
    monkeypatch.setenv("SCANBATCH_GEMINI_RPM", "0")  # bad, but only gemini reads it
    settings = load_settings()
    assert check_extractor("ocr", settings).max_side == 800
    assert check_extractor("ocr", settings, max_side=640).max_side == 640  # an override wins
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    with pytest.raises(ConfigError, match=r"^SCANBATCH_GEMINI_RPM: .*greater than or equal to 1"):
        check_extractor("gemini", settings)
    with pytest.raises(ConfigError, match="SCANBATCH_GEMINI_RPM"):
        create_extractor("gemini", settings)
    assert check_extractor("gemini", settings, rpm=5).rpm == 5  # overridden: not read
    # Read with the settings: the variables of a later moment do not change them.
    monkeypatch.setenv("SCANBATCH_OCR_MAX_SIDE", "900")
    assert check_extractor("ocr", settings).max_side == 800


def test_an_override_reaches_the_options_before_the_extractor_is_built(tmp_path):
    built = create_extractor("ocr", Settings(data_dir=tmp_path), det_side=640, min_score=0.5)
    assert (built.options.det_side, built.options.min_score) == (640, 0.5)


def test_the_factory_is_the_only_way_extractors_are_built():
    """Every caller goes through create_extractor / check_extractor: no other module builds
    an extractor from its options or validates them itself."""
    base = ROOT / "scanbatch" / "extractors" / "base.py"
    for path in (ROOT / "scanbatch").rglob("*.py"):
        if path == base:
            continue
        text = path.read_text()
        for needle in (".from_options(", "Options.model_validate(", "from_settings("):
            assert needle not in text, f"{path.relative_to(ROOT)}: {needle}"
        made = re.search(r"^(?!\s*class ).*(?<!\w)Options\(", text, re.MULTILINE)
        assert made is None, f"{path.relative_to(ROOT)}: {made and made.group()}"


def test_a_kernel_reads_no_setting_from_its_environment(monkeypatch):
    """A parameter left out takes its default, never a SCANBATCH_* variable the kernel
    happens to see; and the environment is read again as usual afterwards."""
    monkeypatch.setenv("SCANBATCH_MATCH_MIN_SCORE", "0.5")
    monkeypatch.setenv("SCANBATCH_OCR_MAX_SIDE", "800")
    params = Settings().kernel_parameters()
    del params["match_min_score"]
    default = Settings.model_fields["match_min_score"].default
    in_kernel = Settings.from_kernel_parameters(params)
    assert in_kernel.match_min_score == default != 0.5
    assert check_extractor("ocr", in_kernel).max_side == 1280  # the option's default
    assert Settings().match_min_score == 0.5
    assert check_extractor("ocr", Settings()).max_side == 800


def test_the_matcher_default_is_the_settings_one():
    from scanbatch.catalog import DEFAULT_MIN_SCORE

    assert Settings.model_fields["match_min_score"].default == DEFAULT_MIN_SCORE


def test_the_settings_only_extractors_take_are_those_their_options_name():
    """EXTRACTOR_ONLY (kept out of the notebook's own parameters) is exactly the settings the
    shipped extractors take through `option_settings`: one added to an extractor and not here
    would reach every job's notebook twice, one left here after it goes would reach none."""
    from scanbatch.extractors import extractor_names, get_extractor_class
    from scanbatch.settings import EXTRACTOR_ONLY

    taken = {
        field
        for name in extractor_names(shipped_only=True)
        for field in get_extractor_class(name).option_settings.values()
    }
    assert taken == EXTRACTOR_ONLY
