"""scanbatch.backlog.google: the real google-genai SDK against the loopback fake of Google's
Files and Batch APIs (scanbatch.testing.fake_batch)."""

from __future__ import annotations

import base64
import filecmp
import json
import logging
import os
import socket
import time
from pathlib import Path

import pytest
from google.genai import types

from scanbatch.backlog.google import (
    BatchState,
    GoogleBatches,
    RemoteBatch,
    batch_state,
    read_result_lines,
)
from scanbatch.errors import ConfigError, GoogleBatchError
from scanbatch.testing.fake_batch import FakeBatchAPI, LineError
from scanbatch.testing.fake_gemini import extraction_reply

MODEL = "gemini-test-model"


@pytest.fixture
def fake():
    with FakeBatchAPI(finish_after=None, seed=7) as api:
        yield api


@pytest.fixture
def google(fake):
    client = GoogleBatches(api_key="test-key", base_url=fake.base_url, timeout=10)
    yield client
    client.close()


def request_json(text: str = "Read this record", photo: bytes = b"") -> dict:
    parts: list[dict] = [{"text": text}]
    if photo:
        parts.append({"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(photo)}})
    return {
        "contents": [{"role": "user", "parts": parts}],
        "systemInstruction": {"parts": [{"text": "You read record sleeves."}]},
        "generationConfig": {"responseMimeType": "application/json"},
    }


def write_input(path: Path, keys: list[str], photo_bytes: int = 0) -> Path:
    with path.open("w") as out:
        for key in keys:
            request = request_json(photo=os.urandom(photo_bytes) if photo_bytes else b"")
            if photo_bytes:
                part = request["contents"][0]["parts"][1]["inlineData"]
                part["data"] = part["data"].decode()
            out.write(json.dumps({"key": key, "request": request}) + "\n")
    return path


def keys_of(n: int, job: str = "job1") -> list[str]:
    return [f"{job}/{i}" for i in range(n)]


def submit(google: GoogleBatches, tmp_path: Path, keys: list[str], name: str) -> RemoteBatch:
    file_name = google.upload(write_input(tmp_path / f"{name}.jsonl", keys), name)
    return google.create(MODEL, file_name, name)


def echo_key(key: str, request: dict) -> dict:
    return extraction_reply({"artistName": {"value": key, "confidence": 0.9}}).body


def answered_text(line) -> str:
    return line.response["candidates"][0]["content"]["parts"][0]["text"]


# --- Files API ---


def test_a_20_mb_input_file_is_uploaded_in_chunks_and_arrives_byte_identical(
    fake, google, tmp_path
):
    path = write_input(tmp_path / "big.jsonl", keys_of(20), photo_bytes=750_000)
    size = path.stat().st_size
    assert size > 19_000_000

    file_name = google.upload(path, "scanbatch-backlog-1")

    (upload,) = fake.uploads
    assert (upload.name, upload.display_name) == (file_name, "scanbatch-backlog-1")
    assert (upload.size, upload.lines) == (size, 20)
    assert filecmp.cmp(path, upload.path, shallow=False)
    chunks = [path for method, path in fake.requests if "upload_id=" in path]
    assert len(chunks) == 3  # the SDK sends 8 MiB at a time


# --- a batch's life ---


def test_a_batch_goes_pending_running_then_succeeded(fake, google, tmp_path):
    batch = submit(google, tmp_path, keys_of(3), "scanbatch-backlog-2")

    assert batch.name.startswith("batches/")
    assert (batch.display_name, batch.state, batch.result_file) == (
        "scanbatch-backlog-2",
        BatchState.PENDING,
        None,
    )
    assert batch.created_at is not None
    (create,) = fake.creates
    assert (create.name, create.display_name, create.model) == (
        batch.name,
        batch.display_name,
        MODEL,
    )

    assert google.get(batch.name).state is BatchState.PENDING
    fake.advance(batch.name)
    assert google.get(batch.name).state is BatchState.RUNNING
    fake.advance(batch.name)
    done = google.get(batch.name)
    assert done.state is BatchState.SUCCEEDED and done.state.finished
    assert done.result_file and done.result_file.startswith("files/")
    assert done.error is None
    assert fake.gets == [batch.name] * 3


def test_with_a_delay_the_fake_finishes_by_itself(tmp_path):
    with FakeBatchAPI(finish_after=0.3) as fake:
        google = GoogleBatches(api_key="k", base_url=fake.base_url, timeout=10)
        batch = submit(google, tmp_path, keys_of(2), "timed")
        seen = [batch.state]
        deadline = time.monotonic() + 10
        while not seen[-1].finished and time.monotonic() < deadline:
            time.sleep(0.05)
            seen.append(google.get(batch.name).state)
        google.close()
    assert seen[0] is BatchState.PENDING
    assert BatchState.RUNNING in seen
    assert seen[-1] is BatchState.SUCCEEDED


def test_results_are_out_of_order_and_matched_by_key(fake, google, tmp_path):
    fake.answer = echo_key
    keys = keys_of(30)
    batch = submit(google, tmp_path, keys, "scanbatch-backlog-3")
    fake.finish(batch.name)

    path = google.download_results(google.get(batch.name), tmp_path / "results.jsonl")

    assert fake.downloads == [google.get(batch.name).result_file]
    assert not (tmp_path / "results.jsonl.part").exists()
    lines = list(read_result_lines(path))
    assert [line.key for line in lines] != keys
    assert sorted(line.key for line in lines) == sorted(keys)
    for line in lines:
        assert line.error is None
        assert json.loads(answered_text(line))["artistName"]["value"] == line.key


def test_a_request_can_fail_alone(fake, google, tmp_path):
    def answer(key, request):
        if key == "job1/5":
            return LineError(429, "Resource exhausted for this request", "RESOURCE_EXHAUSTED")
        return echo_key(key, request)

    fake.answer = answer
    fake.fail_keys = {"job1/2"}
    batch = submit(google, tmp_path, keys_of(8), "scanbatch-backlog-4")
    fake.finish(batch.name)

    path = google.download_results(google.get(batch.name), tmp_path / "r.jsonl")
    by_key = {line.key: line for line in read_result_lines(path)}

    assert by_key["job1/2"].response is None
    assert by_key["job1/2"].error == {
        "code": 400,
        "message": "Request contains an invalid argument.",
        "status": "INVALID_ARGUMENT",
    }
    assert by_key["job1/5"].error["status"] == "RESOURCE_EXHAUSTED"
    answered = [k for k, line in by_key.items() if line.error is None]
    assert sorted(answered) == sorted(set(keys_of(8)) - {"job1/2", "job1/5"})


@pytest.mark.parametrize(
    ("outcome", "state", "message"),
    [("fail", BatchState.FAILED, "fail_message"), ("expire", BatchState.EXPIRED, "expire_message")],
)
def test_failed_and_expired_batches_say_why_and_have_no_results(
    fake, google, tmp_path, outcome, state, message
):
    fake.set_outcome(outcome, display_name="scanbatch-backlog-5")
    batch = submit(google, tmp_path, keys_of(3), "scanbatch-backlog-5")
    fake.finish(batch.name)

    ended = google.get(batch.name)

    assert ended.state is state and ended.state.finished
    assert ended.error == getattr(fake, message)
    assert ended.result_file is None
    with pytest.raises(GoogleBatchError, match="has no result file") as caught:
        google.download_results(ended, tmp_path / "none.jsonl")
    assert not caught.value.retryable


def test_an_unreadable_input_line_fails_the_batch_naming_the_line(fake, google, tmp_path):
    path = write_input(tmp_path / "in.jsonl", keys_of(2))
    with path.open("a") as out:
        out.write('{"key": "job1/2", "request": {"contents": \n')
    batch = google.create(MODEL, google.upload(path, "bad-input"), "bad-input")
    fake.finish(batch.name)

    ended = google.get(batch.name)

    assert ended.state is BatchState.FAILED
    assert "line 3" in ended.error


def test_a_batch_cancelled_while_pending_ends_cancelled_with_no_results(fake, google, tmp_path):
    batch = submit(google, tmp_path, keys_of(3), "scanbatch-backlog-6")

    google.cancel(batch.name)

    ended = google.get(batch.name)
    assert (ended.state, ended.result_file) == (BatchState.CANCELLED, None)
    assert fake.cancels == [batch.name]


def test_a_batch_cancelled_while_running_keeps_the_lines_answered(fake, google, tmp_path):
    fake.cancelled_keep = 2
    batch = submit(google, tmp_path, keys_of(5), "scanbatch-backlog-7")
    fake.advance(batch.name)
    deadline = time.monotonic() + 5
    while fake.answered(batch.name) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)

    google.cancel(batch.name)

    ended = google.get(batch.name)
    assert ended.state is BatchState.CANCELLED
    path = google.download_results(ended, tmp_path / "partial.jsonl")
    assert len(list(read_result_lines(path))) == 2


def test_a_batch_cancelled_on_google_side_ends_cancelled(fake, google, tmp_path):
    fake.set_outcome("cancel")  # the next batch: someone cancels it in Google's console
    batch = submit(google, tmp_path, keys_of(2), "scanbatch-backlog-8")
    fake.finish(batch.name)
    assert google.get(batch.name).state is BatchState.CANCELLED


def test_cancelling_a_batch_that_has_ended_changes_nothing(fake, google, tmp_path):
    batch = submit(google, tmp_path, keys_of(2), "scanbatch-backlog-9")
    fake.finish(batch.name)

    google.cancel(batch.name)

    assert google.get(batch.name).state is BatchState.SUCCEEDED
    assert fake.cancels == [batch.name]


def test_delete_removes_the_batch_and_a_second_delete_is_no_error(fake, google, tmp_path):
    batch = submit(google, tmp_path, keys_of(2), "scanbatch-backlog-10")

    google.delete(batch.name)
    google.delete(batch.name)

    assert fake.deletes == [batch.name, batch.name]
    with pytest.raises(GoogleBatchError) as caught:
        google.get(batch.name)
    assert (caught.value.code, caught.value.retryable) == (404, False)
    assert google.find("scanbatch-backlog-10") is None


def test_an_uploaded_file_can_be_deleted_twice(fake, google, tmp_path):
    file_name = google.upload(write_input(tmp_path / "in.jsonl", keys_of(1)), "in")
    google.delete_file(file_name)
    google.delete_file(file_name)
    assert not fake.uploads[0].path.exists()


# --- finding a batch again ---


def test_find_pages_through_every_batch(tmp_path):
    with FakeBatchAPI(finish_after=None, max_page_size=4) as fake:
        google = GoogleBatches(api_key="k", base_url=fake.base_url, timeout=10)
        file_name = google.upload(write_input(tmp_path / "in.jsonl", keys_of(1)), "in")
        created = [google.create(MODEL, file_name, f"scanbatch-{i}") for i in range(11)]

        oldest = google.find("scanbatch-0")  # listed newest first: on the last page
        missing = google.find("scanbatch-none")
        google.close()

    assert oldest is not None
    assert (oldest.name, oldest.state) == (created[0].name, BatchState.PENDING)
    assert missing is None
    assert len(fake.lists) == 6  # two finds of three pages each
    assert [q.get("pageToken") for q in fake.lists[:3]] == [None, "4", "8"]


def test_a_batch_created_but_answered_500_is_found_by_its_name(fake, google, tmp_path):
    file_name = google.upload(write_input(tmp_path / "in.jsonl", keys_of(2)), "in")
    fake.fail_next("create", 500, after=True)

    with pytest.raises(GoogleBatchError) as caught:
        google.create(MODEL, file_name, "scanbatch-backlog-11")

    assert caught.value.retryable and caught.value.code == 500
    (create,) = fake.creates  # Google made it: the caller never heard
    found = google.find("scanbatch-backlog-11")
    assert found is not None and found.name == create.name


# --- errors ---


def test_a_503_on_get_is_retryable_and_not_retried_by_the_sdk(fake, google, tmp_path):
    batch = submit(google, tmp_path, keys_of(1), "scanbatch-backlog-12")
    fake.fail_next("get", 503)

    with pytest.raises(GoogleBatchError) as caught:
        google.get(batch.name)

    assert caught.value.retryable and caught.value.code == 503
    assert "unavailable" in caught.value.message and batch.name in caught.value.message
    assert fake.gets == [batch.name]  # one attempt: the caller decides when to try again
    assert google.get(batch.name).state is BatchState.PENDING


def test_a_503_on_list_makes_find_retryable(fake, google):
    fake.fail_next("list", 503)
    with pytest.raises(GoogleBatchError) as caught:
        google.find("anything")
    assert caught.value.retryable


def test_a_failed_upload_chunk_is_retryable(fake, google, tmp_path):
    fake.fail_next("chunk", 503)
    with pytest.raises(GoogleBatchError) as caught:
        google.upload(write_input(tmp_path / "in.jsonl", keys_of(2)), "in")
    assert caught.value.retryable
    assert fake.uploads == []


def test_a_bad_key_is_not_retryable_and_names_the_setting(fake, tmp_path):
    google = GoogleBatches(api_key=fake.bad_key, base_url=fake.base_url, timeout=10)
    path = write_input(tmp_path / "in.jsonl", keys_of(1))
    try:
        for call in (lambda: google.upload(path, "in"), lambda: google.find("x")):
            with pytest.raises(GoogleBatchError) as caught:
                call()
            assert not caught.value.retryable
            assert "API key not valid" in caught.value.message
            assert "GEMINI_API_KEY" in caught.value.message
    finally:
        google.close()


def test_an_unreachable_base_url_is_retryable_and_named():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    google = GoogleBatches(api_key="k", base_url=base_url, timeout=5)
    try:
        with pytest.raises(GoogleBatchError) as caught:
            google.get("batches/abc")
    finally:
        google.close()
    assert caught.value.retryable
    assert base_url in caught.value.message and "network" in caught.value.message


def test_a_name_that_is_not_a_batch_is_refused_before_any_request(fake, google):
    with pytest.raises(GoogleBatchError, match="not a batch name") as caught:
        google.get("files/abc")
    assert not caught.value.retryable
    assert fake.requests == []


def test_from_env_reads_the_key_and_says_how_to_set_it(fake, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        GoogleBatches.from_env(base_url=fake.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", fake.bad_key)
    google = GoogleBatches.from_env(base_url=fake.base_url)
    with pytest.raises(GoogleBatchError, match="API key not valid"):
        google.find("x")
    google.close()


# --- states and result lines ---


def test_every_state_the_sdk_knows_is_mapped(caplog):
    caplog.set_level(logging.WARNING, logger="scanbatch.backlog.google")
    for state in types.JobState:
        batch_state(state)
        batch_state(state.value.replace("JOB_STATE_", "BATCH_STATE_"))
    assert caplog.records == []

    assert batch_state("BATCH_STATE_SUCCEEDED") is BatchState.SUCCEEDED
    assert batch_state(types.JobState.JOB_STATE_CANCELLING) is BatchState.RUNNING
    assert batch_state(None) is BatchState.PENDING
    assert batch_state("BATCH_STATE_REPLAYING") is BatchState.RUNNING
    assert "BATCH_STATE_REPLAYING" in caplog.text
    assert [s for s in BatchState if s.finished] == [
        BatchState.SUCCEEDED,
        BatchState.FAILED,
        BatchState.EXPIRED,
        BatchState.CANCELLED,
    ]


def test_result_lines_take_status_objects_and_skip_what_has_no_key(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"key": "j/0", "status": {"code": 3, "message": "bad image"}}),
                json.dumps({"response": {"candidates": []}}),
                "not json",
                "",
                json.dumps({"key": "j/1"}),
                json.dumps({"key": "j/2", "response": {"candidates": []}}),
            ]
        )
    )

    lines = list(read_result_lines(path))

    assert [line.key for line in lines] == ["j/0", "j/1", "j/2"]
    assert lines[0].error == {"code": 3, "message": "bad image", "status": "INVALID_ARGUMENT"}
    assert lines[1].response is None and "neither" in lines[1].error["message"]
    assert lines[2] == type(lines[2])("j/2", {"candidates": []}, None)
    assert "line 2 has no key" in caplog.text and "line 3 is not JSON" in caplog.text
