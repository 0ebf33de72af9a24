"""The hand-off of a job to its kernel (scanbatch.kernel: the warm-up, a job begun before its
notebook, open_job). The job's run and report: test_kernel_job; the notebook's parameters:
test_notebook_parameters."""

import json
import time

import pytest

from scanbatch.kernel import open_job
from scanbatch.settings import Settings
from tests.kernel_jobs import make_job


def test_a_bad_parameter_fails_the_job_before_any_item(tmp_path, clean_env):
    from scanbatch.errors import ConfigError

    folder = make_job(tmp_path, [("A", "B", "")])
    params = {**Settings(data_dir=tmp_path).kernel_parameters(), "job_dir": str(folder.path)}
    with pytest.raises(ConfigError, match="Unknown extractor 'nope'"):
        open_job({**params, "extractor": "nope"})
    with pytest.raises(ConfigError, match="notebook parameter item_concurrency"):
        open_job({**params, "extractor": "fake", "item_concurrency": 0})
    assert not folder.results_path.exists()


def test_the_warm_up_builds_what_the_expected_job_uses(tmp_path, clean_env, monkeypatch):
    import duckdb

    import scanbatch.kernel as kernel
    from scanbatch.catalog import CATALOG_MIGRATION_SQL, export_snapshot, match

    folder = make_job(tmp_path, [("A", "B", "")])
    snapshot = tmp_path / "catalog.parquet"
    con = duckdb.connect(":memory:")
    con.execute(CATALOG_MIGRATION_SQL)
    export_snapshot(con, snapshot)
    monkeypatch.setattr(match, "_CACHE", {})
    monkeypatch.setattr(kernel, "_warmed", {})
    expected = {
        **Settings(data_dir=tmp_path, extractor="fake").kernel_parameters(),
        "catalog_snapshot": str(snapshot),
    }
    kernel.prepare(json.dumps(expected))
    warmed = kernel._warmed["backend"]
    assert warmed.warmed  # its own warm-up ran too
    assert list(match._CACHE) == [(str(snapshot.resolve()), Settings().match_min_score)]
    # The job the warm-up expected gets the extractor built for it, and the loaded index.
    job = open_job({**expected, "job_dir": str(folder.path)})
    assert job.backend is warmed and job.matcher is match.load_matcher(snapshot)
    # The kernel's next job (a group of answered backlog jobs runs on one kernel, one job after
    # another) gets the same reader.
    assert open_job({**expected, "job_dir": str(folder.path)}).backend is warmed
    # A job for another extractor builds its own, which the kernel keeps for its next job.
    other = open_job({**expected, "extractor": "ocr", "job_dir": str(folder.path)})
    assert other.backend.name == "ocr" and kernel._warmed["backend"] is other.backend


def test_a_warm_up_that_cannot_build_the_extractor_leaves_it_to_the_job(
    tmp_path, clean_env, monkeypatch
):
    import scanbatch.kernel as kernel
    from scanbatch.errors import ConfigError

    monkeypatch.setattr(kernel, "_warmed", {})
    folder = make_job(tmp_path, [("A", "B", "")])
    params = {**Settings(data_dir=tmp_path).kernel_parameters(), "extractor": "nope"}
    kernel.prepare(json.dumps(params))  # logged, not raised: the job reports it in words
    assert kernel._warmed == {}
    with pytest.raises(ConfigError, match="Unknown extractor 'nope'"):
        open_job({**params, "job_dir": str(folder.path)})


def results_lines(folder) -> list[str]:
    return folder.results_path.read_text().splitlines() if folder.results_path.exists() else []


def hand_job_to_kernel(params: dict) -> None:
    """What the warm process does: the kernel listens on its end of a socket pair, and
    `hand_over` sends the job's parameters and waits for the kernel's "begun"."""
    import socket

    import scanbatch.kernel as kernel
    from scanbatch.warm_kernel import hand_over

    ours, theirs = socket.socketpair()
    kernel.prepare("{}", job_fd=theirs.detach())
    hand_over(ours, params)


def test_a_job_begun_before_its_notebook_is_the_one_the_notebook_opens(
    tmp_path, clean_env, monkeypatch
):
    """The warm process hands the kernel its job as the job arrives, and the kernel starts its
    items before papermill has run a cell; the notebook's `open_job` then takes that job
    rather than start another."""
    import scanbatch.kernel as kernel

    monkeypatch.setattr(kernel, "_begun", {})
    folder = make_job(tmp_path, [("A", "B", ""), ("C", "D", "")])
    params = {
        **Settings(data_dir=tmp_path, extractor="fake").kernel_parameters(),
        "job_dir": str(folder.path),
    }
    hand_job_to_kernel(params)
    deadline = time.monotonic() + 30
    while len(results_lines(folder)) < 2:  # no cell has run: the items went out on their own
        assert time.monotonic() < deadline
        time.sleep(0.01)
    job = open_job(params)  # what the notebook's cell passes: its globals, with these values
    job.start()
    assert sorted(o.item_index for o in job.process()) == [0, 1]
    assert len(results_lines(folder)) == 2  # each item once
    assert kernel._begun == {}


def test_a_begun_job_with_other_parameters_finishes_before_the_notebooks_own(
    tmp_path, clean_env, monkeypatch
):
    import scanbatch.kernel as kernel

    monkeypatch.setattr(kernel, "_begun", {})
    folder = make_job(tmp_path, [("A", "B", ""), ("C", "D", "")])
    params = {
        **Settings(data_dir=tmp_path, extractor="fake").kernel_parameters(),
        "job_dir": str(folder.path),
    }
    hand_job_to_kernel(params)
    job = open_job({**params, "match_min_score": 0.9})
    assert job.settings.match_min_score == 0.9
    job.start()
    assert job.process() == []  # the begun run did them; none is extracted twice
    assert len(results_lines(folder)) == 2
    assert "2 item(s) finished in an earlier run" in str(job.manifest_table())


def test_a_job_that_cannot_begin_is_left_to_its_notebook(tmp_path, clean_env, monkeypatch):
    import scanbatch.kernel as kernel
    from scanbatch.errors import ConfigError

    monkeypatch.setattr(kernel, "_begun", {})
    folder = make_job(tmp_path, [("A", "B", "")])
    params = {
        **Settings(data_dir=tmp_path).kernel_parameters(),
        "extractor": "nope",
        "job_dir": str(folder.path),
    }
    hand_job_to_kernel(params)  # logged, not raised
    with pytest.raises(ConfigError, match="Unknown extractor 'nope'"):
        open_job(params)  # the notebook's cell says why, in words


def test_a_warmed_job_is_keyed_by_its_extractor_options_too(tmp_path, clean_env):
    import scanbatch.kernel as kernel
    from scanbatch.notebook_parameters import job_parameters

    params = job_parameters(Settings(data_dir=tmp_path, extractor="ocr"), job_dir=tmp_path)
    assert kernel._job_key(params) == kernel._job_key(json.loads(json.dumps(params)))
    other = {**params, "extractor_options": {**params["extractor_options"], "max_side": 640}}
    assert kernel._job_key(other) != kernel._job_key(params)


def test_without_a_job_the_notebook_reads_one_sample_record(clean_env):
    """Opened on its own (Jupyter, nbval), the notebook has a job: a temporary copy of the
    first record of data/sample, so nothing is written into the repository."""
    from scanbatch.settings import REPO_ROOT

    job = open_job({"extractor": "fake"})
    assert not job.folder.path.is_relative_to(REPO_ROOT)
    assert job.mime_types == {0: ["image/jpeg", "image/jpeg", "image/heic"]}
    assert [o.status for o in job.process()] == ["completed"]


def test_the_reader_reads_the_catalog_the_job_is_matched_against(tmp_path, clean_env):
    """One catalog per job: the OCR reader's is the job's `catalog_snapshot`, never the data
    folder's snapshot behind the job's back (which used to make its audit trail say "Catalog:
    none" while the reader had used one)."""
    import duckdb

    from scanbatch.catalog import CATALOG_MIGRATION_SQL, export_snapshot

    con = duckdb.connect(":memory:")
    con.execute(CATALOG_MIGRATION_SQL)
    settings = Settings(data_dir=tmp_path, extractor="ocr")
    export_snapshot(con, settings.catalog_snapshot)  # the data folder has one
    folder = make_job(tmp_path, [("A", "B", "")])
    params = {**settings.kernel_parameters(), "job_dir": str(folder.path)}
    alone = open_job({**params, "catalog_snapshot": ""})
    assert alone.matcher is None and alone.backend.catalog is None
    job = open_job({**params, "catalog_snapshot": str(settings.catalog_snapshot)})
    assert job.matcher is not None and job.backend.catalog is job.matcher
