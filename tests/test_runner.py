"""The job runner with real papermill executions of the real notebook (no HTTP)."""

import json
import time

import pytest

from scanbatch.runner import JobRunner
from scanbatch.settings import Settings
from scanbatch.submit import create_job, write_blobs
from scanbatch.testing.imaging import image_bytes
from scanbatch.validation import parse_manifest

pytestmark = pytest.mark.slow


def make_job(store, settings, scripts, extractor="fake", artist=None):
    import json

    items = [
        {
            "imageCount": 1,
            "photoTypes": ["front"],
            "context": {"stickerText": s, **({"artistName": artist} if artist else {})},
        }
        for s in scripts
    ]
    manifest = parse_manifest(json.dumps(items), len(items))
    blobs = [image_bytes() for _ in items]
    return create_job(
        store,
        settings.jobs_dir,
        "alice",
        manifest,
        write_blobs(blobs, manifest),
        extractor=extractor,
    )


def run_to_end(runner, store, job_id, timeout=90):
    runner.submit(job_id)  # a no-op for a job submitted already
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get_job(job_id)
        if job.status.finished:
            return job
        time.sleep(0.2)
    raise AssertionError("job did not finish")


@pytest.fixture
def runner_settings(tmp_path):
    return Settings(
        data_dir=tmp_path / "data",
        extractor="fake",
        notebook_timeout=20,
        seed_catalog=None,
    )


@pytest.fixture
def runner_store(runner_settings):
    from scanbatch.store import JobStore

    store = JobStore.open(runner_settings.store_path)
    yield store
    store.close()


def test_a_failing_notebook_fails_its_items_with_the_reason(runner_settings, runner_store):
    runner = JobRunner(runner_store, runner_settings)
    runner.start()
    try:
        job_id = make_job(runner_store, runner_settings, ["", ""], extractor="fake-broken")
        job = run_to_end(runner, runner_store, job_id)
    finally:
        runner.stop()
    assert job.status == "failed"
    messages = {r.error_message for r in job.results}
    assert messages == {
        "Processing notebook failed: ConfigError: fake-broken cannot start: FAKE_SETTING is missing"
    }


def test_a_hanging_notebook_is_stopped_at_the_wall_clock_limit(runner_settings, runner_store):
    settings = runner_settings.model_copy(update={"notebook_timeout": 6.0})
    runner = JobRunner(runner_store, settings)
    runner.start()
    started = time.monotonic()
    try:
        job_id = make_job(runner_store, settings, ["", "sleep:120"])
        job = run_to_end(runner, runner_store, job_id)
    finally:
        runner.stop()
    assert time.monotonic() - started < 40
    assert job.status == "completed"  # the quick item finished before the limit
    assert job.results[0].status == "completed"
    assert "exceeded SCANBATCH_NOTEBOOK_TIMEOUT (6 s)" in job.results[1].error_message
    assert runner.running == 0
    # The killed run still left its notebook, with the parameters it was given.
    notebook = (settings.jobs_dir / job_id / "process_batch.ipynb").read_text()
    assert "injected-parameters" in notebook and "notebook_timeout" not in notebook


def test_recovery_ingests_finished_lines_and_finishes_without_a_kernel(
    runner_settings, runner_store
):
    from datetime import UTC, datetime

    from scanbatch.jobfolder import JobFolder, ResultsWriter
    from scanbatch.models import ItemOutcome, Status

    job_id = make_job(runner_store, runner_settings, ["", ""])
    runner_store.mark_processing(job_id)
    writer = ResultsWriter(JobFolder.for_job(runner_settings.jobs_dir, job_id).results_path)
    for i in range(2):
        writer.append(
            ItemOutcome(item_index=i, status=Status.COMPLETED, finished_at=datetime.now(UTC))
        )
    runner = JobRunner(runner_store, runner_settings)
    assert runner.recover() == []  # everything was in results.jsonl: nothing to re-run
    assert runner_store.get_job(job_id).status == "completed"
    assert runner.queued == 0


def test_a_job_submitted_twice_runs_once(runner_settings, runner_store):
    runner = JobRunner(runner_store, runner_settings.model_copy(update={"runner_workers": 2}))
    runner.start()
    try:
        while runner.pool.ready < 2:
            time.sleep(0.1)
        job_id = make_job(runner_store, runner_settings, ["sleep:1.5", "sleep:1.5"])
        runner.submit(job_id)
        runner.submit(job_id)  # e.g. a retried request: the idle second worker must not take it
        job = run_to_end(runner, runner_store, job_id)
    finally:
        runner.stop()
    assert job.status == "completed"
    lines = (runner_settings.jobs_dir / job_id / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2  # each item extracted once
    log = (runner_settings.jobs_dir / job_id / "papermill.log").read_text()
    assert log.count("Executing notebook") == 1


def test_recovery_of_a_job_whose_folder_vanished(runner_settings, runner_store):
    import shutil

    job_id = make_job(runner_store, runner_settings, [""])
    shutil.rmtree(runner_settings.jobs_dir / job_id)
    JobRunner(runner_store, runner_settings).recover()
    job = runner_store.get_job(job_id)
    assert job.status == "failed" and "folder is missing" in job.results[0].error_message


def test_two_jobs_at_once_share_one_gemini_rate_limit(runner_settings, runner_store, monkeypatch):
    """Two runner workers, each job in its own kernel process: together they never send more
    than the configured requests per period (the window is one file in the data folder)."""
    from scanbatch.testing.fake_gemini import FakeGemini, extraction_reply

    rpm, period = 3, 2.0
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")  # kernels inherit the environment
    # Slow replies keep each job running for seconds after its last request, so the two jobs
    # overlap even when one kernel is slow to begin (the machine may be busy).
    with FakeGemini(default=extraction_reply(), latency=5.0) as fake:
        # The gemini extractor's own variables, read with the settings (kernels see none).
        monkeypatch.setenv("SCANBATCH_GEMINI_RPM", str(rpm))
        monkeypatch.setenv("SCANBATCH_GEMINI_RATE_PERIOD", str(period))
        monkeypatch.setenv("SCANBATCH_GEMINI_BASE_URL", fake.base_url)
        settings = Settings(
            **{
                **runner_settings.model_dump(),
                "extractor": "gemini",
                "runner_workers": 2,
                "notebook_timeout": 120,
            }
        )
        runner = JobRunner(runner_store, settings)
        runner.start()
        try:
            while runner.pool.ready < 2:  # both kernels warm, so the jobs do run together
                time.sleep(0.1)
            jobs = [
                make_job(runner_store, settings, [""] * 4, extractor="gemini", artist=name)
                for name in ("Job A", "Job B")
            ]
            for job_id in jobs:
                runner.submit(job_id)
            views = [run_to_end(runner, runner_store, job_id, timeout=120) for job_id in jobs]
        finally:
            runner.stop()
        requests = sorted(fake.requests, key=lambda r: r.at)
    assert [v.status for v in views] == ["completed", "completed"]
    assert len(requests) == 8
    starts = [r.at for r in requests]
    # The window is kept at the sender; arrival here adds the HTTP round trip's jitter (up to
    # a few tenths of a second under load), hence the slack. Two windows, one per job, would
    # put twice rpm requests within a few milliseconds.
    for i in range(len(starts) - rpm):
        assert starts[i + rpm] - starts[i] >= period * 0.75, starts
    # The two notebooks ran at the same time, so the limit held across jobs, not per job.
    runs = []
    for job_id in jobs:
        notebook = json.loads((settings.jobs_dir / job_id / "process_batch.ipynb").read_text())
        meta = notebook["metadata"]["papermill"]
        runs.append((meta["start_time"], meta["end_time"]))
    (a_start, a_end), (b_start, b_end) = runs
    assert a_start < b_end and b_start < a_end


def test_a_job_is_answered_at_its_last_result_and_its_notebook_still_runs_to_its_end(
    runner_settings, runner_store
):
    """The last result line finishes the job (what is left of the notebook is its report,
    which cannot change an item), so the app is not kept waiting for the report; the notebook
    still runs to its end and is saved, the job's audit trail, even when the runner is
    stopped at that very moment."""
    runner = JobRunner(runner_store, runner_settings)
    runner.start()
    try:
        job_id = make_job(runner_store, runner_settings, ["", ""])
        runner.submit(job_id)
        while not runner_store.get_job(job_id).status.finished:
            time.sleep(0.01)
        job = runner_store.get_job(job_id)
    finally:
        runner.stop()
    notebook = json.loads((runner_settings.jobs_dir / job_id / "process_batch.ipynb").read_text())
    assert job.status == "completed" and job.completed_items == 2
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code)
    assert notebook["metadata"]["papermill"]["exception"] is None
    assert "2 completed, 0 failed" in json.dumps(code[-1]["outputs"])


def test_a_group_runs_on_one_kernel_each_notebook_as_if_its_kernel_were_new(
    runner_settings, runner_store
):
    """Answered backlog jobs go as a group (`submit_group`): one kernel runs them one after
    another, and each executed notebook still starts at cell 1 and runs without an error."""
    from scanbatch.jobfolder import JobFolder

    settings = runner_settings.model_copy(update={"runner_workers": 1})
    runner = JobRunner(runner_store, settings)
    runner.start()  # before the jobs exist: its recovery would queue them one by one
    jobs = [make_job(runner_store, settings, ["pid", "pid"]) for _ in range(3)]
    alone = make_job(runner_store, settings, ["pid"])
    try:
        runner.submit_group(jobs)
        done = [run_to_end(runner, runner_store, job) for job in jobs]
        single = run_to_end(runner, runner_store, alone)
    finally:
        runner.stop()
    kernels = {r.extraction["labelName"]["value"] for job in done for r in job.results}
    assert len(kernels) == 1  # one kernel read all six records
    assert single.results[0].extraction["labelName"]["value"] not in kernels
    for job in jobs:
        nb = json.loads(JobFolder.for_job(settings.jobs_dir, job).notebook_path.read_text())
        counts = [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"]
        assert counts == list(range(1, len(counts) + 1))
        errors = [
            o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"
        ]
        assert not errors
    assert all(job.status == "completed" for job in done)
