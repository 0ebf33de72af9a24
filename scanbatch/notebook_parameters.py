"""The processing notebook's parameters: what the runner passes to papermill, and the notebook's
parameters cell, generated from the same names (tests pin the notebook against it).

A job's parameters are its folder and catalog snapshot, the core settings the kernel uses
(`Settings.kernel_parameters`), and `extractor_options`: every option of the job's extractor
and no other's, so an OCR job's notebook never mentions Gemini. Secrets are never parameters."""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scanbatch.errors import ConfigError
from scanbatch.extractors import check_extractor, get_extractor_class
from scanbatch.extractors.base import env_options, env_prefix
from scanbatch.settings import REPO_ROOT, SHIPPED_DATA, Settings, kernel_fields

log = logging.getLogger(__name__)

# Parameters of the notebook that describe the job rather than the settings.
JOB_PARAMETERS = ("job_dir", "catalog_snapshot")
EXTRACTOR_OPTIONS = "extractor_options"
# The cell tag by which nbval (`make test`) compares a cell's output with the stored one: a tag,
# not nbval's comment marker, so the reader of a job's audit trail does not see it.
CHECK_OUTPUT_TAG = "nbval-check-output"

JOB_PARAMETER_LINES = (
    'job_dir: str = ""  # The job folder, data/jobs/<jobId>; empty: a copy of one sample record.',
    'catalog_snapshot: str = ""  # Parquet snapshot of the catalog to match against; empty: none.',
)
EXTRACTOR_OPTIONS_LINE = (
    f"{EXTRACTOR_OPTIONS}: dict = {{}}  # The chosen extractor's own options (the runner passes "
    "every one); empty: its defaults."
)


def notebook_parameters() -> list[str]:
    """Every parameter the processing notebook declares, in order."""
    return [*JOB_PARAMETERS, *kernel_fields(), EXTRACTOR_OPTIONS]


def extractor_options(name: str, settings: Settings) -> dict[str, Any]:
    """Backend `name`'s options as `settings` (and the SCANBATCH_<NAME>_* variables read with
    them) make them, as JSON values. When they do not pass (an unknown backend, its key
    missing, a bad variable), its variables as they were read: the kernel meets the same
    error and its notebook says it in words, where defaults would run the job with options
    nobody chose."""
    try:
        options = check_extractor(name, settings)
    except ConfigError as exc:
        log.warning("extractor %s: %s", name, exc.message)
        try:
            known = env_options(get_extractor_class(name))
        except ConfigError:  # an unknown backend has no options
            return {}
        # Only its options' variables: any other SCANBATCH_<EXTRACTOR>_* (a key put there by
        # mistake) never reaches the notebook, which is kept.
        return {k: v for k, v in settings.environment(env_prefix(name)).items() if k in known}
    return options.model_dump(mode="json")


def job_parameters(
    settings: Settings,
    *,
    extractor: str | None = None,
    job_dir: Path | None = None,
    catalog_snapshot: Path | None = None,
) -> dict[str, Any]:
    """The papermill parameters of a job run with `extractor` (default: the settings' own).
    Paths are absolute: the kernel runs in the job folder."""
    name = extractor or settings.extractor
    params = {
        "job_dir": str(job_dir.resolve()) if job_dir is not None else None,
        "catalog_snapshot": str(catalog_snapshot.resolve()) if catalog_snapshot else "",
        **settings.kernel_parameters(),
        "extractor": name,
        EXTRACTOR_OPTIONS: extractor_options(name, settings),
    }
    if job_dir is None:  # a warm-up's: the job is not known yet
        del params["job_dir"]
    return params


def options_parameter(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The `extractor_options` a kernel was given (none: the extractor's defaults)."""
    value = parameters.get(EXTRACTOR_OPTIONS) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"notebook parameter {EXTRACTOR_OPTIONS}: give a dict of the extractor's options, "
            f"not {type(value).__name__}"
        )
    return dict(value)


def options_key(parameters: Mapping[str, Any]) -> str:
    """`extractor_options` as one comparable value (a warmed kernel is keyed by it)."""
    return json.dumps(options_parameter(parameters), sort_keys=True, default=str)


# -- running the notebook on its own ---------------------------------------------------------

SAMPLE = SHIPPED_DATA / "sample"


def sample_job_dir() -> Path:
    """A job folder holding the first record of `data/sample` in a new temporary folder: what
    the notebook processes when it is run without a job (opened in Jupyter, or checked by
    nbval), so that nothing is written into the repository."""
    from scanbatch.jobfolder import JobFolder
    from scanbatch.models import Manifest

    manifest = json.loads((SAMPLE / "manifest.json").read_text())
    first = manifest["items"][0]
    root = Path(tempfile.mkdtemp(prefix="scanbatch-sample-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # the kernel's exit removes it
    folder = JobFolder.for_job(root, "sample-job")
    folder.create(Manifest.model_validate({"items": [first]}))
    photos = sorted(SAMPLE.glob("item00_*"))
    for position, photo in enumerate(photos[: first["imageCount"]]):
        folder.write_image(0, position, photo.read_bytes())
    return folder.path


# -- the notebook's parameters cell ----------------------------------------------------------


def notebook_default(name: str) -> Any:
    """A setting's default as the notebook declares it: paths relative to the repository (the
    runner always passes them absolute), None as "" (the settings read "" as None), and the
    offline extractor (the settings' own default depends on GEMINI_API_KEY)."""
    if name == "extractor":
        return "ocr"
    value = Settings.model_fields[name].default
    if isinstance(value, Path):
        return str(value.relative_to(REPO_ROOT) if value.is_relative_to(REPO_ROOT) else value)
    return "" if value is None else value


def open_job_source() -> str:
    """The notebook's cell that opens the job, every parameter passed by its name. nbval
    checks that it shows nothing (no warning): its reference output is empty, the one kind
    that cannot mislead in a job's copy of the notebook written before it runs."""
    names = ", ".join(f"{name}={name}" for name in notebook_parameters())
    return f"from scanbatch.kernel import open_job\njob = open_job(dict({names}))"


def parameters_source() -> str:
    """The source of the notebook's parameters cell, one `name: type = value  # help` line per
    parameter, generated from the settings object."""
    lines = [
        "# Parameters. papermill injects this job's values in the cell below; the server and",
        "# `scanbatch run` take them from the settings object (scanbatch.notebook_parameters).",
        *JOB_PARAMETER_LINES,
    ]
    for name in kernel_fields():
        default = notebook_default(name)
        help_text = " ".join((Settings.model_fields[name].description or "").split())
        literal = json.dumps(default) if isinstance(default, str) else repr(default)
        lines.append(f"{name}: {type(default).__name__} = {literal}  # {help_text}")
    lines.append(EXTRACTOR_OPTIONS_LINE)
    return "\n".join(lines)
