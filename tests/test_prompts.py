import pytest

from scanbatch.errors import ConfigError
from scanbatch.prompts import load_prompt, prompt_versions
from scanbatch.settings import SHIPPED_DATA, Settings


def test_shipped_prompt_covers_the_brief():
    text = load_prompt(Settings().prompts_dir, Settings().prompt_version)
    for needle in (
        "artistName",
        "albumTitle",
        "labelName",
        "catalogNumber",
        "reviewText",
        "upc",
        "confidence",
        "handwritten",
        "RO 5/3",
        "center label",
        "12 digits",
        "shrink wrap",
        "Omit",
    ):
        assert needle in text, needle


def test_versions_are_file_names(tmp_path):
    (tmp_path / "v1.md").write_text("one")
    (tmp_path / "v2-short.md").write_text("two\n")
    (tmp_path / "notes.txt").write_text("not a prompt")
    assert prompt_versions(tmp_path) == ["v1", "v2-short"]
    assert load_prompt(tmp_path, "v2-short") == "two"


def test_unknown_version_lists_the_known_ones(tmp_path):
    (tmp_path / "v1.md").write_text("one")
    (tmp_path / "v2.md").write_text("two")
    with pytest.raises(ConfigError, match=r"Unknown prompt version 'v3'.*v1, v2"):
        load_prompt(tmp_path, "v3")


@pytest.mark.parametrize("version", ["../v1", "/etc/passwd", "", "v1/../v1"])
def test_a_version_cannot_name_a_path(tmp_path, version):
    (tmp_path / "v1.md").write_text("one")
    with pytest.raises(ConfigError):
        load_prompt(tmp_path, version)


def test_empty_prompt_is_refused(tmp_path):
    (tmp_path / "v1.md").write_text("  \n")
    with pytest.raises(ConfigError, match="empty"):
        load_prompt(tmp_path, "v1")


def test_missing_folder_says_none(tmp_path):
    with pytest.raises(ConfigError, match="one of none"):
        load_prompt(tmp_path / "nope", "v1")


def test_shipped_folder_is_the_default():
    assert Settings().prompts_dir == SHIPPED_DATA / "prompts"
    assert "v1" in prompt_versions(SHIPPED_DATA / "prompts")
