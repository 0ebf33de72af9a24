"""Experiments with a variant in `"mode": "batch"`: the real google-genai SDK against the loopback
fakes, FakeGemini for the interactive variant and FakeBatchAPI (Files and Batch APIs) for the
batch one, on a crate of 12 records named as a phone names its photos."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from scanbatch.errors import BadRequest
from scanbatch.experiments import compare, load_dataset, read_variants, run_experiment
from scanbatch.experiments.batch import display_name
from scanbatch.experiments.compare import OVERALL
from scanbatch.experiments.variants import Variant, validate_variants
from scanbatch.prices import load_prices
from scanbatch.testing.camera import camera_crate
from scanbatch.testing.fake_batch import FakeBatchAPI
from scanbatch.testing.fake_gemini import PATH_SUFFIX, FakeGemini, RecordedRequest
from tests.test_experiments_run import fake_gemini_env, run_notebook, truth_responder

RECORDS = 12
COST = "cost/1000 items USD"


def phone_set(folder: Path, records: int = RECORDS) -> Path:
    """A labelled dataset of `records` records of two photos each, IMG_4101.jpg onwards."""
    photos = camera_crate(folder, records, 2, heic_every=None)
    manifest, truth = [], []
    for i in range(records):
        names = [p.name for p in photos[2 * i : 2 * i + 2]]
        types = ["front_cover", "back_cover"]
        manifest.append({"imageCount": 2, "photoTypes": types})
        truth.append(
            {
                "itemIndex": i,
                "artistName": f"Artist {i}",
                "albumTitle": f"Album {i}",
                "labelName": f"Label {i % 3}",
                "photos": names,
                "photoTypes": types,
            }
        )
    (folder / "manifest.json").write_text(json.dumps({"items": manifest}))
    (folder / "truth.json").write_text(json.dumps({"items": truth}))
    return folder


@pytest.fixture
def dataset(tmp_path):
    return phone_set(tmp_path / "crate")


@pytest.fixture
def gemini(dataset):
    with FakeGemini(responder=truth_responder(dataset)) as server:
        yield server


@pytest.fixture
def google(dataset):
    respond = truth_responder(dataset)

    def answer(key: str, request: dict) -> dict:
        # the answer the fake Gemini gives the same request (prompt v1: the truth)
        return respond(RecordedRequest(f"/v1beta/models/m{PATH_SUFFIX}", {}, request, 0.0)).body

    # Out of order (the default), in a fixed order so a failure can be replayed; the outcome
    # after a few polls' worth of running.
    with FakeBatchAPI(answer=answer, seed=7, finish_after=0.3) as server:
        yield server


@pytest.fixture
def env(tmp_path, monkeypatch, gemini):
    monkeypatch.setenv("SCANBATCH_BACKLOG_POLL_SECONDS", "0.05")
    return fake_gemini_env(monkeypatch, tmp_path, gemini.base_url)


def batch_variant(google: FakeBatchAPI, **more) -> dict:
    return {
        "extractor": "gemini",
        "prompt_version": "v1",
        "mode": "batch",
        "name": "gemini-v1-batch",
        "options": {"base_url": google.base_url},
        **more,
    }


def run(dataset, variants, env, **kwargs):
    notices: list[str] = []
    result = run_experiment(
        dataset, variants, settings=env, progress=False, on_notice=notices.append, **kwargs
    )
    return result, notices


def test_interactive_and_batch_compared_the_batch_at_half_the_price(dataset, env, gemini, google):
    result, notices = run(dataset, ["gemini:v1", batch_variant(google)], env, name="both")
    assert gemini.request_count == RECORDS  # the interactive variant only
    [created] = google.creates
    assert created.display_name == display_name("both", 1) == "scanbatch-exp-both-1"
    assert created.model == "gemini-3-flash-preview"
    assert [u.lines for u in google.uploads] == [RECORDS]
    # the progress, through the run's notices
    assert any(
        n.startswith(f"variant gemini-v1-batch (batch): Google batch {created.name} running")
        for n in notices
    ), notices
    assert f"variant gemini-v1-batch (batch): Google batch {created.name} succeeded, 0 min" in (
        notices
    )
    batch_records = result.records_for("gemini-v1-batch")
    assert len(batch_records) == RECORDS
    assert all(r["billing"] == "batch" and r["status"] == "completed" for r in batch_records)
    assert all(r["googleBatch"] == created.name for r in batch_records)
    assert all("billing" not in r for r in result.records_for("gemini/v1"))
    meta = next(v for v in result.variants if v["name"] == "gemini-v1-batch")
    assert meta["mode"] == "batch"
    assert meta["batch"]["name"] == created.name and meta["batch"]["state"] == "succeeded"
    assert meta["batch"]["items"] == RECORDS
    assert not list(result.path.glob("batch-*"))  # the input and result files are gone

    # Google answered out of order; every answer went to its own record by key.
    # The records are written in the result file's order, each read for the key it names.
    order = [r["itemIndex"] for r in batch_records]
    assert order != sorted(order) and sorted(order) == list(range(RECORDS))
    # the input and the result file are deleted at Google once read
    deleted = [path for method, path in google.requests if method == "DELETE"]
    assert len(deleted) == 2 and all("/files/" in path for path in deleted)
    rows = {r["variant"]: r for r in compare(result).matrix_rows()}
    for name in ("gemini/v1", "gemini-v1-batch"):
        assert rows[name][f"{OVERALL} acc"] == 1.0, name
        assert rows[name]["tokens in/item"] == 1200  # the same tokens both ways
    full, half = rows["gemini/v1"][COST], rows["gemini-v1-batch"][COST]
    prices = load_prices()
    assert full == pytest.approx(1000 * prices.cost("gemini", "gemini-3-flash-preview", 1200, 80))
    assert half == pytest.approx(full * prices.batch_discount) and prices.batch_discount == 0.5
    assert rows["gemini-v1-batch"]["latency p50 ms"] is None  # a batch has no per-record latency
    text = compare(result).format_text()
    assert f"{full:.3f}" in text.split("cost/1000 items")[1].splitlines()[0]


def test_a_line_error_fails_that_record_alone(dataset, env, google):
    google.fail_keys = {"0/3"}
    result, _ = run(dataset, [batch_variant(google)], env)
    by_item = {r["itemIndex"]: r for r in result.records}
    assert by_item[3]["status"] == "failed"
    assert by_item[3]["errorCode"] == "backlog_line_error"
    assert (
        "Google's Batch API could not answer this record (400 INVALID_ARGUMENT"
        in (by_item[3]["errorMessage"])
    )
    assert all(by_item[i]["status"] == "completed" for i in by_item if i != 3)
    assert result.meta["counts"] == {"records": RECORDS, "failed": 1, "cacheHits": 0}
    # the failure is not cached: the next run asks for record 3 alone
    google.fail_keys = set()
    again, _ = run(dataset, [batch_variant(google)], env)
    assert [u.lines for u in google.uploads] == [RECORDS, 1]
    assert all(r["status"] == "completed" for r in again.records)
    assert [r["itemIndex"] for r in again.records if not r["cached"]] == [3]


def test_an_expired_batch_fails_its_records_saying_so(dataset, env, google):
    google.set_outcome("expire")
    result, notices = run(dataset, ["gemini:v1", batch_variant(google)], env)
    failed = result.records_for("gemini-v1-batch")
    assert len(failed) == RECORDS
    assert {r["errorCode"] for r in failed} == {"backlog_batch_expired"}
    assert "expired: Google did not run it within 24 hours" in failed[0]["errorMessage"]
    assert all(r["status"] == "completed" for r in result.records_for("gemini/v1"))
    assert any("expired" in n for n in notices)
    errors = compare(result).errors()
    assert len(errors) == RECORDS and errors[0]["errorCode"] == "backlog_batch_expired"


@pytest.mark.parametrize(
    ("outcome", "kept", "code", "words"),
    [("fail", None, "backlog_batch_failed", "failed at Google (Batch processing failed"),
     ("cancel", 4, "backlog_batch_cancelled", "was cancelled at Google")],
)  # fmt: skip
def test_a_failed_or_cancelled_batch_fails_its_records_with_its_code(
    dataset, env, google, outcome, kept, code, words
):
    google.set_outcome(outcome)
    google.cancelled_keep = kept  # a batch cancelled while running keeps what it answered
    result, _ = run(dataset, [batch_variant(google)], env)
    failed = [r for r in result.records if r["status"] == "failed"]
    assert len(failed) == RECORDS - (kept or 0)
    assert {r["errorCode"] for r in failed} == {code}
    assert (
        words in failed[0]["errorMessage"] and "run the variant again" in failed[0]["errorMessage"]
    )
    answered = [r for r in result.records if r["status"] == "completed"]
    assert len(answered) == (kept or 0)
    assert compare(result).matrix_rows()[0]["artistName acc"] == pytest.approx(
        (kept or 0) / RECORDS
    )


def test_a_batch_google_refuses_fails_its_records_saying_why(dataset, env, google):
    google.fail_next("create", 400, "Request contains an invalid argument.")
    result, _ = run(dataset, [batch_variant(google)], env)
    assert {r["errorCode"] for r in result.records} == {"backlog_google_error"}
    assert result.records[0]["errorMessage"].startswith("could not submit: ")
    assert "invalid argument" in result.records[0]["errorMessage"]
    assert google.creates == []
    # the uploaded file does not stay at Google
    assert [m for m, path in google.requests if "/files/" in path and m == "DELETE"] == ["DELETE"]


def test_a_second_run_is_answered_from_the_cache_without_a_batch(dataset, env, google):
    first, _ = run(dataset, [batch_variant(google)], env)
    assert len(google.creates) == 1
    second, notices = run(dataset, [batch_variant(google)], env)
    assert len(google.creates) == 1 and len(google.uploads) == 1  # nothing new at Google
    assert all(r["cached"] and r["status"] == "completed" for r in second.records)
    assert "batch" not in next(v for v in second.variants if v["name"] == "gemini-v1-batch")
    assert notices == []
    rows = compare(second).matrix_rows()
    assert rows[0][COST] == compare(first).matrix_rows()[0][COST]  # priced as batch still
    assert rows[0]["paid this run USD"] == 0


def test_the_mode_is_not_in_the_cache_key_an_interactive_answer_serves_a_batch(
    dataset, env, gemini, google
):
    run(dataset, ["gemini:v1"], env)
    # the same request (Gemini at the same address), through the Batch API
    same = {"extractor": "gemini", "prompt_version": "v1", "mode": "batch"}
    result, _ = run(dataset, [same], env)
    assert google.creates == [] and gemini.request_count == RECORDS
    assert all(r["cached"] and r["billing"] == "batch" for r in result.records)
    assert result.records[0]["variant"] == "gemini/v1 batch"


def test_an_interrupted_run_cancels_its_batch_at_google(dataset, env, google, monkeypatch):
    google.finish_after = None  # it would run until `advance`: the run waits
    created = threading.Event()
    # Ctrl-C as a terminal sends it, whatever handler an earlier test left installed (a
    # server's "stop on the first, ignore the rest").
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def notice(text: str) -> None:
        if "created for" in text:
            created.set()

    def interrupt() -> None:
        if created.wait(20):
            os.kill(os.getpid(), signal.SIGINT)
        else:  # never hang the suite: let the batch end, and the assertion below say why
            google.finish()

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_experiment(
                dataset, [batch_variant(google)], settings=env, progress=False,
                on_notice=notice, name="stopped",
            )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    assert created.is_set(), "the batch was never created"
    [batch] = google.creates
    assert google.cancels == [batch.name]
    assert google.state(batch.name) == "BATCH_STATE_CANCELLED"


def test_a_stopped_wait_cancels_the_batch_and_its_records_say_so(dataset, env, google, tmp_path):
    from scanbatch.experiments.batch import BatchVariantRun
    from scanbatch.experiments.cache import DiskCache
    from scanbatch.experiments.catalog import choose_catalog
    from scanbatch.experiments.execute import _prepare

    google.finish_after = None
    ds = load_dataset(dataset)
    [variant] = validate_variants(read_variants([batch_variant(google)]), env)
    prepared = _prepare(variant, env, choose_catalog(env, None, ds.meta))
    stop = threading.Event()
    meta: dict = {}
    records: list[dict] = []
    batch = BatchVariantRun(
        prepared, ds.items, 1, cache=DiskCache(tmp_path / "cache"), matcher=None,
        folder=tmp_path, run="stopped", position=0, poll_seconds=0.05,
        on_notice=lambda text: stop.set() if "created for" in text else None,  # as Ctrl-C
        stop=stop, meta=meta,
    )  # fmt: skip
    batch.run(records.append)
    [created] = google.creates
    assert google.cancels == [created.name]
    assert len(records) == RECORDS and {r["errorCode"] for r in records} == {
        "backlog_batch_cancelled"
    }
    assert records[0]["errorMessage"] == (
        f"the run was stopped; Google batch {created.name} was cancelled"
    )
    assert meta["batch"]["state"] == "cancelled" and meta["batch"]["name"] == created.name
    assert not list(tmp_path.glob("batch-*"))


@pytest.mark.slow
def test_a_batch_variant_runs_through_the_notebook(dataset, env, google, tmp_path):
    import nbformat

    out = tmp_path / "experiments.ipynb"
    run_notebook(
        out,
        {
            "dataset": str(dataset),
            "variants": ["gemini:v1", batch_variant(google)],
            "run_name": "nb",
        },
    )
    assert [c.display_name for c in google.creates] == ["scanbatch-exp-nb-1"]
    text = json.dumps([c.get("outputs", []) for c in nbformat.read(out, as_version=4).cells])
    assert "gemini-v1-batch" in text and "failed records: 0" in text
    assert "Google batch batches/" in text  # the wait, told in the notebook


# --- bad input ------------------------------------------------------------------------------


def test_batch_with_an_extractor_that_cannot_batch_is_refused(env):
    with pytest.raises(BadRequest) as err:
        validate_variants(read_variants([{"extractor": "ocr", "mode": "batch"}]), env)
    message = err.value.message
    assert message.startswith("variants[0] (ocr batch).mode: the ocr extractor cannot batch")
    assert 'remove "mode": "batch" to run it interactively' in message
    assert "gemini" in message  # the extractor that can


def test_an_unknown_mode_is_refused_naming_the_modes(env):
    with pytest.raises(BadRequest) as err:
        read_variants([{"extractor": "gemini", "mode": "later"}])
    assert err.value.message == (
        "variants[0].mode: unknown mode 'later'; use one of 'interactive', 'batch' (batch: "
        "through Google's Batch API)"
    )


def test_a_refused_batch_variant_sends_nothing_and_records_nothing(dataset, env, google):
    with pytest.raises(BadRequest, match="cannot batch"):
        run_experiment(dataset, ["gemini:v1", {"extractor": "ocr", "mode": "batch"}], settings=env)
    assert google.requests == []
    assert not (env.data_dir / "experiments").exists() or not list(
        (env.data_dir / "experiments").glob("*/run.json")
    )


def test_the_same_variant_both_ways_has_two_names(env):
    both = validate_variants(read_variants(["gemini:v1", {**Variant(extractor="gemini",
        prompt_version="v1").model_dump(exclude_none=True), "mode": "batch"}]), env)  # fmt: skip
    assert [v.label for v in both] == ["gemini/v1", "gemini/v1 batch"]
