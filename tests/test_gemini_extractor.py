"""The gemini extractor through the real google-genai SDK against the fake server on loopback."""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from scanbatch.errors import ConfigError, ExtractionError
from scanbatch.extractors import check_extractor, create_extractor
from scanbatch.extractors.gemini import UPC_UNVERIFIED_CONFIDENCE, GeminiExtractor
from scanbatch.extractors.ratelimit import RateLimiter
from scanbatch.jobfolder import JobFolder
from scanbatch.models import Manifest, Photo, ScanContext, Status
from scanbatch.pipeline import process_folder
from scanbatch.prompts import load_prompt
from scanbatch.settings import SHIPPED_DATA, Settings
from scanbatch.testing.fake_gemini import (
    SAMPLE_FIELDS,
    FakeGemini,
    Reply,
    empty_text_reply,
    error_reply,
    extraction_reply,
    finish_reason_reply,
    malformed_json_reply,
    no_candidates_reply,
    safety_block_reply,
    text_reply,
    timeout_reply,
)
from scanbatch.testing.imaging import image_bytes

KEY = "test-key"
FAST = {"retry_base_delay": 0.01, "retry_max_delay": 3.0, "max_retries": 3, "timeout": 5.0}


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_env_base_url(monkeypatch):
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    monkeypatch.delenv("GOOGLE_GENAI_API_VERSION", raising=False)


def gemini_options(**overrides) -> GeminiExtractor.Options:
    """Options as the factory makes them (the extractor's defaults, the settings' prompt),
    overridden."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEMINI_API_KEY", "test-key")  # check_extractor requires one
        for name in list(os.environ):
            if name.startswith("SCANBATCH_GEMINI_"):
                mp.delenv(name)
        options = check_extractor("gemini", Settings(extractor="gemini"), **overrides)
    assert isinstance(options, GeminiExtractor.Options)
    return options


def make(fake: FakeGemini, limiter: RateLimiter | None = None, sleep=time.sleep, **overrides):
    options = gemini_options(base_url=fake.base_url, **{**FAST, **overrides})
    # A private limiter per test: the process-wide one would carry state between tests.
    return GeminiExtractor(
        options, api_key=KEY, rate_limiter=limiter or RateLimiter(10_000), sleep=sleep
    )


def photo(fmt: str = "JPEG", photo_type: str = "front_cover") -> Photo:
    mime = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heic"}
    return Photo(data=image_bytes(fmt), mime_type=mime[fmt], photo_type=photo_type)


def inline_parts(body: dict) -> list[tuple[str, bytes]]:
    found = []
    for part in body["contents"][0]["parts"]:
        data = part.get("inlineData") or part.get("inline_data")
        if data:
            mime = data.get("mimeType") or data.get("mime_type")
            found.append((mime, base64.urlsafe_b64decode(data["data"])))
    return found


def text_parts(body: dict) -> str:
    return "\n".join(p["text"] for p in body["contents"][0]["parts"] if "text" in p)


def fail(extractor: GeminiExtractor, photos: list[Photo] | None = None) -> ExtractionError:
    with pytest.raises(ExtractionError) as info:
        extractor.extract(photos or [photo()], None)
    return info.value


# --- the request ---------------------------------------------------------------------------


def test_warming_up_sends_nothing_and_the_first_request_still_works(fake):
    extractor = make(fake)
    extractor.warm()  # what the processing kernel does before its job arrives
    assert fake.request_count == 0
    assert extractor.extract([photo()], None).usage.model == gemini_options().model
    assert fake.request_count == 1


def test_request_carries_prompt_images_schema_temperature_and_model(fake):
    photos = [
        photo("JPEG", "front_cover"),
        photo("PNG", "center_label"),
        photo("WEBP", "back_cover"),
        photo("HEIF", "photo"),
    ]
    extractor = make(fake, model="gemini-test-model", temperature=0.05)
    extractor.extract(photos, None)

    (request,) = fake.requests
    assert request.model == "gemini-test-model"
    assert request.path.endswith("/models/gemini-test-model:generateContent")
    assert request.headers["x-goog-api-key"] == "test-key"
    body = request.body
    assert body["systemInstruction"]["parts"][0]["text"] == load_prompt(
        SHIPPED_DATA / "prompts", "v1"
    )
    assert inline_parts(body) == [(p.mime_type, p.data) for p in photos]
    assert [m for m, _ in inline_parts(body)] == [
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/heic",
    ]
    config = body["generationConfig"]
    assert config["temperature"] == pytest.approx(0.05)
    assert config["responseMimeType"] == "application/json"
    schema = config["responseSchema"]
    assert set(schema["properties"]) == {
        "artistName",
        "albumTitle",
        "labelName",
        "catalogNumber",
        "reviewText",
        "upc",
    }
    assert schema["properties"]["upc"]["required"] == ["value", "confidence"]
    assert "required" not in schema  # every field may be omitted
    prompt = text_parts(body)
    assert "4 photos of one record" in prompt
    for label in (
        "front cover (image/jpeg)",
        "center label (image/png)",
        "back cover (image/webp)",
        "image/heic",
    ):
        assert label in prompt


def test_sdk_default_api_version_with_base_url_and_env_var(fake, monkeypatch):
    # google-genai 3.x builds <base>/v1/models/... both ways (GOOGLE_AI_API_DEFAULT_VERSION);
    # the fake answers any version, so this records the fact rather than depending on it.
    make(fake).extract([photo()], None)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
    options = gemini_options(**FAST)  # no base_url: the SDK reads the env
    GeminiExtractor(options, api_key=KEY, rate_limiter=RateLimiter(100)).extract([photo()], None)
    assert [r.api_version for r in fake.requests] == ["v1", "v1"]


def test_context_reaches_the_prompt(fake):
    context = ScanContext(
        artist_name="Stereolab",
        album_title="Dots and Loops",
        sticker_text='RO 5/3 "fav trk 3"',
        detected_upc="036172945825",
    )
    make(fake).extract([photo(), photo("PNG", "back")], context)
    prompt = text_parts(fake.requests[0].body)
    assert "2 photos" in prompt
    assert '"Stereolab"' in prompt and '"Dots and Loops"' in prompt
    assert json.dumps('RO 5/3 "fav trk 3"') in prompt  # quoted and escaped: data, not orders
    assert "barcode scanner" in prompt and "036172945825" in prompt
    assert "back cover" in prompt


def test_no_context_is_stated(fake):
    make(fake).extract([photo()], None)
    assert "No context" in text_parts(fake.requests[0].body)


# --- the response --------------------------------------------------------------------------


def test_fields_and_usage(fake):
    fake.script(extraction_reply(prompt_tokens=1500, output_tokens=90))
    result = make(fake, model="m1").extract([photo()], None)
    assert result.fields_json() == {
        key: {"value": f["value"], "confidence": f["confidence"]}
        for key, f in SAMPLE_FIELDS.items()
    }
    usage = result.usage
    assert (usage.extractor, usage.model, usage.prompt_version) == ("gemini", "m1", "v1")
    assert (usage.input_tokens, usage.output_tokens, usage.retries) == (1500, 90, 0)
    assert usage.latency_ms is not None and usage.latency_ms > 0
    assert json.loads(usage.raw_response) == SAMPLE_FIELDS


def test_fields_are_clamped_and_omitted(fake):
    fake.script(
        extraction_reply(
            {
                "artistName": {"value": "  Broadcast  ", "confidence": 1.7},
                "albumTitle": {"value": "Tender Buttons", "confidence": -0.3},
                "labelName": {"value": "", "confidence": 0.9},
                "catalogNumber": {"value": "   ", "confidence": 0.9},
                "reviewText": {"value": None, "confidence": 0.9},
                "upc": {"value": 36172945825, "confidence": 0.9},
            }
        )
    )
    result = make(fake).extract([photo()], None)
    assert result.fields_json() == {
        "artistName": {"value": "Broadcast", "confidence": 1.0},
        "albumTitle": {"value": "Tender Buttons", "confidence": 0.0},
    }


def test_words_for_nothing_are_omitted_and_odd_confidences_tolerated(fake):
    fake.script(
        extraction_reply(
            {
                "artistName": {"value": "N/A", "confidence": 0.9},
                "albumTitle": {"value": "Haha Sound", "confidence": "0.8"},
                "labelName": {"value": "Warp", "confidence": True},
                "catalogNumber": "WARPLP108",
            }
        )
    )
    fields = make(fake).extract([photo()], None).fields_json()
    assert "artistName" not in fields
    assert fields["albumTitle"] == {"value": "Haha Sound", "confidence": 0.8}
    assert fields["labelName"]["value"] == "Warp"
    assert 0 <= fields["labelName"]["confidence"] <= 1
    assert fields["catalogNumber"]["value"] == "WARPLP108"


@pytest.mark.parametrize(
    ("value", "expected", "trusted"),
    [
        ("0 36172 94582 5", "036172945825", True),  # printed groups
        ("0036172945825", "036172945825", True),  # EAN-13 form of a UPC-A
        ("5012345678900", "5012345678900", True),  # a real EAN-13
        ("036172945826", "036172945826", False),  # wrong check digit
        ("3617294582", "3617294582", False),  # too short: a misread
    ],
)
def test_upc_is_normalised_and_check_digit_verified(fake, value, expected, trusted):
    fake.script(extraction_reply({"upc": {"value": value, "confidence": 0.95}}))
    upc = make(fake).extract([photo()], None).upc
    assert upc.value == expected
    if trusted:
        assert upc.confidence == 0.95
    else:
        assert upc.confidence <= UPC_UNVERIFIED_CONFIDENCE


def test_upc_without_digits_is_dropped(fake):
    fake.script(extraction_reply({"upc": {"value": "barcode torn off", "confidence": 0.6}}))
    assert make(fake).extract([photo()], None).upc is None


@pytest.mark.parametrize(
    ("reply", "code", "words"),
    [
        (malformed_json_reply(), "gemini_invalid_json", "not valid JSON"),
        (text_reply("[1, 2]"), "gemini_invalid_json", "not an object"),
        (empty_text_reply(), "gemini_empty_response", "empty response"),
        (no_candidates_reply(), "gemini_no_candidates", "no candidates"),
        (safety_block_reply(prompt=True), "gemini_blocked", "blockReason SAFETY"),
        (safety_block_reply(prompt=False, finish=True), "gemini_blocked", "finishReason SAFETY"),
        (finish_reason_reply("RECITATION"), "gemini_blocked", "finishReason RECITATION"),
        (
            finish_reason_reply("MAX_TOKENS", '{"artistName": {"va'),
            "gemini_truncated",
            "MAX_TOKENS",
        ),
    ],
)
def test_unusable_answers_are_item_errors_with_raw_kept(fake, reply, code, words):
    fake.script(reply)
    error = fail(make(fake))
    assert error.code == code
    assert words in error.message
    assert error.raw  # the audit trail keeps what Gemini said
    assert fake.request_count == 1  # an answer, even a useless one, is not retried


def test_raw_text_of_malformed_answer_is_kept_verbatim(fake):
    reply = malformed_json_reply()
    fake.script(reply)
    error = fail(make(fake))
    assert error.raw == reply.body["candidates"][0]["content"]["parts"][0]["text"]
    assert error.retryable


def test_blocked_is_not_retryable(fake):
    fake.script(safety_block_reply())
    assert fail(make(fake)).retryable is False


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_then_succeed(fake, status):
    fake.script(error_reply(status), error_reply(status))
    result = make(fake).extract([photo()], None)
    assert fake.request_count == 3
    assert result.usage.retries == 2
    assert result.artist_name.value == "Stereolab"


@pytest.mark.parametrize(
    ("status", "code"), [(429, "gemini_rate_limited"), (503, "gemini_unavailable")]
)
def test_retries_stop_at_the_limit(fake, status, code):
    fake.default = error_reply(status)
    error = fail(make(fake, max_retries=2))
    assert fake.request_count == 3  # the first call and two retries
    assert error.code == code
    assert error.retryable is True
    assert "after 2 retries" in error.message


def test_a_non_json_http_body_is_retried_then_an_item_error(fake):
    fake.script(Reply(502, "<html>bad gateway</html>"), Reply(200, "<html>proxy</html>"))
    fake.default = Reply(200, "<html>proxy</html>")
    error = fail(make(fake, max_retries=2))
    assert fake.request_count == 3
    assert error.code == "gemini_invalid_response" and error.retryable


def test_the_sdk_itself_does_not_retry(fake):
    fake.default = error_reply(503)
    fail(make(fake, max_retries=0))
    assert fake.request_count == 1


@pytest.mark.parametrize(
    ("status", "message", "code"),
    [
        (400, "Invalid JSON payload received.", "gemini_bad_request"),
        (400, "API key not valid. Please pass a valid API key.", "gemini_auth"),
        (401, "Request had invalid authentication credentials.", "gemini_auth"),
        (403, "Permission denied.", "gemini_auth"),
        (404, "models/nope is not found for API version v1", "gemini_model_not_found"),
    ],
)
def test_client_errors_are_not_retried(fake, status, message, code):
    fake.default = error_reply(status, message)
    error = fail(make(fake))
    assert fake.request_count == 1
    assert error.code == code
    assert error.retryable is False
    assert message in error.message
    if code == "gemini_auth":
        assert "GEMINI_API_KEY" in error.message


def test_retry_after_header_is_honoured(fake):
    fake.script(error_reply(429, retry_after=1))
    result = make(fake, retry_base_delay=0.01).extract([photo()], None)
    assert fake.request_count == 2
    (gap,) = fake.gaps()
    assert 0.95 <= gap < 3.0  # honoured; the upper bound leaves room for a loaded machine
    assert result.usage.retries == 1


def test_retry_info_in_the_error_body_is_honoured(fake):
    # Gemini puts the wait in google.rpc.RetryInfo rather than a header.
    fake.script(error_reply(429, retry_delay="0.6s"), error_reply(503, retry_after="0.3"))
    make(fake, retry_base_delay=0.01).extract([photo()], None)
    first, second = fake.gaps()
    # Lower bounds are what is tested; the upper ones only leave room for a loaded machine.
    assert 0.55 <= first < 2.0
    assert 0.28 <= second < 1.5


def test_retry_after_beyond_the_limit_fails_at_once(fake):
    fake.script(error_reply(429, retry_after=120))
    slept: list[float] = []
    error = fail(make(fake, retry_max_delay=2, sleep=slept.append))
    assert slept == []  # no wait at all: 120 s is past the limit, so it fails at once
    assert fake.request_count == 1
    assert error.code == "gemini_rate_limited" and error.retryable
    assert "120" in error.message


def test_backoff_is_exponential_with_jitter(fake):
    delays: list[float] = []
    fake.default = error_reply(500)
    fail(make(fake, sleep=delays.append, max_retries=4, retry_base_delay=0.1, retry_max_delay=0.5))
    assert len(delays) == 4
    for attempt, delay in enumerate(delays):
        ceiling = min(0.5, 0.1 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_timeout_is_retried_once_then_fails(fake):
    fake.default = timeout_reply(3)
    started = time.monotonic()
    error = fail(make(fake, timeout=0.3, max_timeout_retries=1))
    elapsed = time.monotonic() - started
    assert fake.request_count == 2
    assert error.code == "gemini_timeout" and error.retryable
    assert "0.3 s" in error.message
    assert elapsed < 2.9  # the fake answers only after 3 s: neither call waited for it


def test_timeout_then_success(fake):
    fake.script(timeout_reply(3))
    result = make(fake, timeout=0.3).extract([photo()], None)
    assert result.usage.retries == 1 and fake.request_count == 2


def test_connection_errors_are_retried_then_fail():
    with FakeGemini() as closed:
        url = closed.base_url  # the port is free again once the server closes
    delays: list[float] = []
    options = gemini_options(base_url=url, **{**FAST, "max_retries": 2})
    extractor = GeminiExtractor(
        options, api_key=KEY, rate_limiter=RateLimiter(100), sleep=delays.append
    )
    error = fail(extractor)
    assert error.code == "gemini_connection" and error.retryable
    assert len(delays) == 2


# --- rate limit ----------------------------------------------------------------------------


class GrantLog(RateLimiter):
    """A real limiter that also keeps every start it granted."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.granted: list[float] = []

    def _window(self, starts):
        delay, kept = super()._window(starts)
        if delay is None:
            self.granted.append(kept[-1])
        return delay, kept


def test_concurrent_items_share_the_rate_limit(fake):
    limiter = GrantLog(2, period=0.5)  # 2 per half second, i.e. the rpm window shortened
    extractor = make(fake, limiter=limiter)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: extractor.extract([photo()], None), range(6)))
    assert len(results) == 6 and len(fake.requests) == 6
    # The grants, not the fake's arrival times: a loaded machine can delay one request on its
    # way to the fake (CI saw two arrivals 0.14 s apart whose grants were a window apart).
    times = sorted(limiter.granted)
    assert len(times) == 6
    for i in range(len(times) - 2):
        assert times[i + 2] - times[i] >= 0.45  # never 3 starts within one window
    assert times[-1] - times[0] >= 0.9
    # One config object serves every thread: the SDK must not have altered it between calls.
    configs = [json.dumps(r.body["generationConfig"], sort_keys=True) for r in fake.requests]
    assert len(set(configs)) == 1


def test_extractors_for_the_same_quota_share_one_window_file(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.setenv("SCANBATCH_GEMINI_BASE_URL", fake.base_url)
    monkeypatch.setenv("SCANBATCH_GEMINI_RPM", "7")
    settings = Settings(data_dir=tmp_path, extractor="gemini")
    first = create_extractor("gemini", settings)
    second = create_extractor("gemini", settings)
    other_model = create_extractor("gemini", settings, model="gemini-other")
    assert first._limiter.path == second._limiter.path != other_model._limiter.path
    assert first._limiter.path.parent == tmp_path / "ratelimit"
    assert first._limiter.max_calls == 7 and first._limiter.period == 60


def test_options_are_typed_and_an_unknown_one_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    settings = Settings(extractor="gemini", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="Unknown option 'temprature' for extractor 'gemini'"):
        create_extractor("gemini", settings, temprature=0.3)
    with pytest.raises(ConfigError, match="option 'temperature'"):
        create_extractor("gemini", settings, temperature="hot")
    built = create_extractor("gemini", settings, temperature=0.4, prompt_version="v1")
    assert built.options.temperature == 0.4
    # The rest are the extractor's own defaults.
    assert built.options.model == GeminiExtractor.Options.model_fields["model"].default


def test_the_options_are_the_only_source_of_defaults():
    """Each default is written once: on the option (the core settings hold none of them),
    except the prompt's folder and version, which are the core settings of those names."""
    fields = GeminiExtractor.Options.model_fields
    required = {name for name, field in fields.items() if field.is_required()}
    assert required == set(GeminiExtractor.option_settings) == {"prompts_dir", "prompt_version"}
    assert not {f"gemini_{name}" for name in fields} & set(Settings.model_fields)
    assert all(fields[name].description for name in fields)


# --- configuration -------------------------------------------------------------------------


def test_missing_api_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        create_extractor("gemini", Settings(extractor="gemini"))
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        check_extractor("gemini", Settings(extractor="gemini"))


def test_unknown_prompt_version_fails_when_built(monkeypatch, tmp_path):
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    with pytest.raises(ConfigError, match="v1"):
        create_extractor(
            "gemini", Settings(extractor="gemini", prompt_version="v999", data_dir=tmp_path)
        )
    # An override reaches the options before the extractor is built: it fails the same way.
    with pytest.raises(ConfigError, match="v1"):
        create_extractor(
            "gemini", Settings(extractor="gemini", data_dir=tmp_path), prompt_version="v999"
        )


def test_the_gemini_variables_set_its_options(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("GEMINI_API_KEY", "from-env")
    monkeypatch.setenv("SCANBATCH_GEMINI_BASE_URL", fake.base_url)
    monkeypatch.setenv("SCANBATCH_GEMINI_MODEL", "gemini-x")
    monkeypatch.setenv("SCANBATCH_GEMINI_TEMPERATURE", "0.2")
    monkeypatch.setenv("SCANBATCH_GEMINI_RPM", "1000")
    settings = Settings(extractor="gemini", data_dir=tmp_path)
    create_extractor("gemini", settings).extract([photo()], None)
    (request,) = fake.requests
    assert request.model == "gemini-x"
    assert request.headers["x-goog-api-key"] == "from-env"
    assert request.body["generationConfig"]["temperature"] == pytest.approx(0.2)


# --- through the pipeline ------------------------------------------------------------------


def test_pipeline_records_usage_and_item_errors(fake, tmp_path):
    manifest = Manifest.model_validate({"items": [{"imageCount": 1, "photoTypes": ["front"]}] * 2})
    folder = JobFolder.for_job(tmp_path, "job")
    folder.create(manifest)
    for i in range(2):
        folder.write_image(i, 0, image_bytes("HEIF"))
    fake.script(error_reply(403, "Permission denied."))
    outcomes = {o.item_index: o for o in process_folder(folder, make(fake), concurrency=1)}
    assert outcomes[0].status == Status.FAILED
    assert (outcomes[0].error_code, outcomes[0].retryable) == ("gemini_auth", False)
    assert outcomes[1].status == Status.COMPLETED
    assert outcomes[1].usage.input_tokens == 1200
    assert outcomes[1].usage.prompt_version == "v1"
    assert inline_parts(fake.requests[1].body)[0][0] == "image/heic"
