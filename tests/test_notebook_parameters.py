"""The processing notebook's parameters (scanbatch/notebook_parameters.py), pinned against the
settings object and the extractors' options, and what a job's notebook shows of them."""

import ast
import json
import re
from pathlib import Path

import papermill
import pytest

from scanbatch.errors import ConfigError
from scanbatch.extractors import create_extractor, get_extractor_class
from scanbatch.notebook_parameters import (
    CHECK_OUTPUT_TAG,
    EXTRACTOR_OPTIONS,
    JOB_PARAMETERS,
    job_parameters,
    notebook_parameters,
    open_job_source,
    parameters_source,
)
from scanbatch.settings import (
    EXTRACTOR_ONLY,
    PROCESSING_NOTEBOOK,
    REPO_ROOT,
    SERVER_ONLY,
    Settings,
    kernel_fields,
)

PY_TYPES = {int: "int", float: "float", str: "str"}


def test_the_notebooks_parameters_are_the_settings_kernel_fields(clean_env):
    declared = papermill.inspect_notebook(str(PROCESSING_NOTEBOOK))
    assert (
        list(declared)
        == [*JOB_PARAMETERS, *kernel_fields(), EXTRACTOR_OPTIONS]
        == notebook_parameters()
    )
    assert set(kernel_fields()) == set(Settings.model_fields) - SERVER_ONLY - EXTRACTOR_ONLY
    defaults = Settings()
    for name in kernel_fields():
        param = declared[name]
        field = Settings.model_fields[name]
        value = ast.literal_eval(param["default"])
        expected = getattr(defaults, name)
        if isinstance(expected, Path):  # declared relative to the repository
            assert param["inferred_type_name"] == "str"
            assert expected in (Path(value), REPO_ROOT / value), name
        elif expected is None:  # declared as "", which the settings read as None
            assert (param["inferred_type_name"], value) == ("str", ""), name
        else:
            assert param["inferred_type_name"] == PY_TYPES[type(expected)], name
            assert value == expected, name
        assert param["help"] == " ".join(field.description.split()), name
    options = declared[EXTRACTOR_OPTIONS]
    assert (options["inferred_type_name"], ast.literal_eval(options["default"])) == ("dict", {})
    # And the server sends exactly these, with a value for each.
    sent = job_parameters(Settings(), job_dir=REPO_ROOT)
    assert list(sent) == sorted(sent, key=notebook_parameters().index)
    assert set(sent) == set(notebook_parameters())


def test_the_parameters_cell_is_the_generated_one_and_the_notebook_names_its_kernel():
    notebook = json.loads(PROCESSING_NOTEBOOK.read_text())
    cells = [c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1 and "".join(cells[0]["source"]) == parameters_source()
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    # Thin: every code cell is a line or two that calls the package.
    code = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"][1:]
    assert all(len(src.splitlines()) <= 3 for src in code)
    assert code[0] == open_job_source()  # every parameter passed by name, no globals()
    # Shipped without outputs: a job's copy written before it runs must show nothing stale.
    assert all(c["outputs"] == [] for c in notebook["cells"] if c["cell_type"] == "code")
    # nbval (`make test`) checks that opening the job shows nothing: a reference output (the
    # empty one) is compared only for a cell with an execution count.
    checked = [c for c in notebook["cells"] if CHECK_OUTPUT_TAG in c["metadata"].get("tags", [])]
    assert "NBVAL" not in json.dumps(notebook)  # nothing of the test harness in the story
    assert [c["execution_count"] for c in checked] == [1]


def test_a_job_gets_only_its_own_extractors_options(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SCANBATCH_GEMINI_RPM", "7")
    monkeypatch.setenv("SCANBATCH_OCR_MAX_SIDE", "800")
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-secret")
    settings = Settings(data_dir=tmp_path)
    ocr = job_parameters(settings, extractor="ocr")
    assert ocr["extractor"] == "ocr"
    assert set(ocr[EXTRACTOR_OPTIONS]) == set(get_extractor_class("ocr").Options.model_fields)
    assert ocr[EXTRACTOR_OPTIONS]["max_side"] == 800
    gemini = job_parameters(settings, extractor="gemini")
    assert gemini[EXTRACTOR_OPTIONS]["rpm"] == 7
    assert gemini[EXTRACTOR_OPTIONS]["prompt_version"] == settings.prompt_version
    assert "AIza-secret" not in json.dumps(gemini)
    assert not {"prompts_dir", "prompt_version"} & set(gemini)  # they are gemini's options
    # An extractor that cannot run here gets its variables as read, never its defaults: its
    # kernel meets the same error and says why in words.
    monkeypatch.setenv("SCANBATCH_GEMINI_RPM", "0")
    monkeypatch.setenv("SCANBATCH_GEMINI_API_KEY", "AIza-put-in-the-wrong-place")
    bad = job_parameters(Settings(data_dir=tmp_path), extractor="gemini")[EXTRACTOR_OPTIONS]
    assert bad == {"rpm": "0"}
    with pytest.raises(ConfigError, match="'rpm'"):
        create_extractor("gemini", Settings.from_kernel_parameters(ocr), **bad)
    monkeypatch.delenv("GEMINI_API_KEY")
    missing = job_parameters(Settings(data_dir=tmp_path), extractor="gemini")
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        create_extractor("gemini", Settings.from_kernel_parameters(missing))


@pytest.mark.slow
def test_an_ocr_jobs_notebook_never_mentions_gemini(clean_env, tmp_path):
    from tests.kernel_jobs import make_job

    folder = make_job(tmp_path, [("Artist", "Title", "")])
    settings = Settings(data_dir=tmp_path, extractor="ocr", seed_catalog=None)
    out = folder.path / "executed.ipynb"
    papermill.execute_notebook(
        str(PROCESSING_NOTEBOOK),
        str(out),
        parameters=job_parameters(settings, job_dir=folder.path),
        cwd=str(folder.path),
        progress_bar=False,
    )
    text = out.read_text()
    assert "1 completed, 0 failed" in text
    gemini = get_extractor_class("gemini").Options.model_fields
    injected = next(
        "".join(c["source"])
        for c in json.loads(text)["cells"]
        if "injected-parameters" in c["metadata"].get("tags", [])
    )
    options = ast.literal_eval(injected.split(f"{EXTRACTOR_OPTIONS} = ", 1)[1].splitlines()[0])
    assert set(options) == set(get_extractor_class("ocr").Options.model_fields)
    assert not set(options) & set(gemini) - {"min_score"}
    # No Gemini setting either (the extractor setting's help names the key GEMINI_API_KEY).
    assert not re.search(r"gemini_(?!api_key)", text, re.IGNORECASE), text
    for name in ("temperature", "rpm", "base_url", "prompt_version", "max_retries"):
        assert name not in text, name
