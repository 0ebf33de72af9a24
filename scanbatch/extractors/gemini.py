"""The `gemini` extractor: one google-genai `generate_content` call per item.

The SDK is told not to retry (HttpRetryOptions(attempts=1)) so that this module's loop is the
only one: it shares the process-wide rate limit, honours Retry-After, and knows which
failures are worth another attempt. Every failure ends as an ExtractionError with a `code`."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import Field, field_validator

from scanbatch.errors import ConfigError, ExtractionError
from scanbatch.extractors.base import Extractor, ExtractorOptions
from scanbatch.extractors.ratelimit import (
    RateLimiter,
    backoff_delay,
    parse_duration,
    parse_retry_after,
    shared_limiter,
)
from scanbatch.models import Extraction, ExtractionField, Photo, ScanContext, Usage
from scanbatch.names import FIELDS
from scanbatch.prompts import load_prompt
from scanbatch.settings import Settings
from scanbatch.upc import normalize_upc, upc_check_digit_ok

if TYPE_CHECKING:
    from scanbatch.backlog.google import GoogleBatches
    from scanbatch.catalog import Matcher

log = logging.getLogger(__name__)

API_KEY_ENV = "GEMINI_API_KEY"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"

# Each field's attribute on `Extraction` (the Python side of its camelCase alias).
_FIELD_ATTRIBUTES = {
    f.alias: name for name, f in Extraction.model_fields.items() if f.alias in FIELDS
}
# The response schema's keys are the API's camelCase names, so what the model writes is what
# the station's app reads.
FIELD_DESCRIPTIONS = {
    "artistName": "Performing artist or band, as printed.",
    "albumTitle": "Album title, as printed.",
    "labelName": "Record label that released it.",
    "catalogNumber": "The label's catalog number (not the station's shelf code).",
    "reviewText": "Handwritten DJ review, transcribed as written.",
    "upc": "Barcode digits, 12 (UPC-A) or 13 (EAN-13).",
}

# A UPC whose check digit fails, or that is not 12-13 digits, is a misread: kept so that a
# human sees it, but never above this confidence.
UPC_UNVERIFIED_CONFIDENCE = 0.3
# The schema requires a confidence; if a model still omits it, neither trust nor discard.
DEFAULT_CONFIDENCE = 0.5
# Models sometimes answer "not visible" in words despite the prompt; that is an omission.
_NON_VALUES = {"", "n/a", "na", "none", "null", "unknown", "not visible", "not available", "-"}

# Finish reasons that mean the answer was withheld, not merely cut short.
_BLOCKED_FINISH = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "LANGUAGE",
}

_PHOTO_TYPE_NAMES = {
    "front": "front cover",
    "back": "back cover",
    "label": "center label",
    "photo": "photo (part not stated)",
}


def _http_client_errors(name: str) -> tuple[type[BaseException], ...]:
    # The SDK sends with httpx2 by default and httpx when chosen; either may be installed.
    found: list[type[BaseException]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        found.append(getattr(module, name))
    return tuple(found)


def api_key_from_env() -> str:
    api_key = os.environ.get(API_KEY_ENV, "").strip()
    if not api_key:
        raise ConfigError(
            f"{API_KEY_ENV} is not set: export your Gemini API key as {API_KEY_ENV} "
            "(https://aistudio.google.com/apikey), or set SCANBATCH_EXTRACTOR=ocr to "
            "extract offline"
        )
    return api_key


TRANSPORT_ERRORS = _http_client_errors("TransportError")
TIMEOUT_ERRORS = _http_client_errors("TimeoutException")


class GeminiExtractor(Extractor):
    name: ClassVar[str] = "gemini"
    can_batch: ClassVar[bool] = True

    class Options(ExtractorOptions):
        """Each option is also SCANBATCH_GEMINI_<OPTION> (e.g. SCANBATCH_GEMINI_MODEL), except
        the prompt's folder and version, which are the core settings of those names."""

        model: str = Field("gemini-3-flash-preview", description="Gemini model name.")
        temperature: float = Field(0.1, ge=0, le=2, description="Sampling temperature.")
        timeout: float = Field(60.0, gt=0, description="Seconds per Gemini call.")
        max_retries: int = Field(
            4, ge=0, le=10, description="Retries of a 429/5xx/connection error."
        )
        max_timeout_retries: int = Field(
            1,
            ge=0,
            description="Of max_retries, how many may follow a timeout (each costs a "
            "full timeout, so a hung model should not hold the item for minutes).",
        )
        rpm: int = Field(
            60,
            ge=1,
            description="Gemini requests per rate period, shared by every job of every process "
            "using this data folder.",
        )
        rate_period: float = Field(
            60.0,
            gt=0,
            description="Seconds over which SCANBATCH_GEMINI_RPM is counted (Gemini counts per "
            "minute; tests shorten it).",
        )
        base_url: str | None = Field(
            None,
            description="Gemini endpoint; unset uses the SDK's GOOGLE_GEMINI_BASE_URL, else "
            "Google's.",
        )
        prompts_dir: Path = Field(description="Folder of versioned prompt files.")
        prompt_version: str = Field(description="Prompt file name, without .md.")
        retry_base_delay: float = Field(
            1.0, ge=0, description="Seconds before the first retry; doubles per retry, with jitter."
        )
        retry_max_delay: float = Field(
            60.0, ge=0, description="Longest wait between retries, Retry-After included."
        )

        @field_validator("base_url", mode="before")
        @classmethod
        def _empty_is_none(cls, value: object) -> object:
            return None if value == "" else value

    option_settings: ClassVar[dict[str, str]] = {
        "prompts_dir": "prompts_dir",
        "prompt_version": "prompt_version",
    }

    def __init__(
        self,
        options: GeminiExtractor.Options,
        *,
        api_key: str | None = None,
        rate_limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`api_key` None: GEMINI_API_KEY, read here (secrets are never options)."""
        super().__init__(options)
        self.options: GeminiExtractor.Options = options
        # Loaded now so that an unknown version fails before any item runs.
        self.system_prompt = load_prompt(options.prompts_dir, options.prompt_version)
        self._sleep = sleep
        http_options = types.HttpOptions(
            base_url=options.base_url,  # None: the SDK falls back to GOOGLE_GEMINI_BASE_URL
            timeout=max(1, math.ceil(options.timeout * 1000)),  # the SDK takes milliseconds
            retry_options=types.HttpRetryOptions(attempts=1),  # our loop is the only retry
        )
        self._client = genai.Client(
            vertexai=False,
            api_key=api_key if api_key is not None else api_key_from_env(),
            http_options=http_options,
        )
        self.base_url = (
            options.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or DEFAULT_BASE_URL
        )
        # Without a shared limiter (built by from_options), a private in-memory window.
        self._limiter = rate_limiter or RateLimiter(options.rpm, options.rate_period)
        self._config = types.GenerateContentConfig(
            system_instruction=self.system_prompt,
            temperature=options.temperature,
            response_mime_type="application/json",
            response_schema=response_schema(),
            # No tools are sent, so there is nothing to call; left on, the SDK deep-copies this
            # config for its function-calling loop on every request (~1,100 deepcopy calls).
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )

    @classmethod
    def check_environment(cls) -> None:
        api_key_from_env()

    @classmethod
    def from_options(
        cls, options: ExtractorOptions, settings: Settings, catalog: Matcher | None = None
    ) -> GeminiExtractor:
        assert isinstance(options, GeminiExtractor.Options)
        base_url = options.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or DEFAULT_BASE_URL
        # One budget per endpoint and model for every job of every process on this data folder.
        limiter = shared_limiter(
            settings.data_dir,
            ("gemini", base_url, options.model),
            options.rpm,
            options.rate_period,
        )
        return cls(options, rate_limiter=limiter)

    def request_info(self) -> dict[str, str]:
        return {"model": self.options.model, "prompt version": self.options.prompt_version}

    def close(self) -> None:
        self._client.close()

    def warm(self) -> None:
        # The SDK's pydantic types build their validators on first use: ~60 ms of the first
        # request. Build a request and read an answer the way extract does, offline, and the
        # types the SDK itself makes of an answer.
        for model in (
            types.Candidate,
            types.GenerateContentResponseUsageMetadata,
            types.HttpResponse,
            types.UserContent,
        ):
            model.model_rebuild()
        build_contents([Photo(data=b"", mime_type="image/jpeg", photo_type="front")], None)
        answer = {"value": "", "confidence": 0.0}
        response = types.GenerateContentResponse.model_validate(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": json.dumps(answer)}]},
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1},
            }
        )
        parse_extraction(response_text(response))

    def extract(self, photos: list[Photo], context: ScanContext | None) -> Extraction:
        if not photos:
            raise ExtractionError("The item has no photos to send to Gemini", code="no_photos")
        contents = build_contents(photos, context)
        response, retries, latency_ms = self._call(contents)
        return self._read(response, latency_ms=latency_ms, retries=retries)

    def _read(
        self,
        response: types.GenerateContentResponse,
        *,
        latency_ms: float | None,
        retries: int = 0,
        batch: bool = False,
    ) -> Extraction:
        text = response_text(response)
        extraction = parse_extraction(text)
        usage = response.usage_metadata
        extraction.usage = Usage(
            extractor=self.name,
            model=self.options.model,
            prompt_version=self.options.prompt_version,
            latency_ms=latency_ms,
            input_tokens=usage.prompt_token_count if usage else None,
            output_tokens=_output_tokens(usage),
            retries=retries,
            raw_response=text,
            batch=batch,
        )
        return extraction

    # -- the backlog: the same request and the same reading, through the Batch API ----------

    def batch_client(self) -> GoogleBatches:
        from scanbatch.backlog.google import GoogleBatches

        return GoogleBatches(
            api_key=api_key_from_env(), base_url=self.base_url, timeout=self.options.timeout
        )

    def batch_model(self) -> str:
        return self.options.model

    def batch_request(self, photos: list[Photo], context: ScanContext | None) -> dict[str, Any]:
        """The GenerateContentRequest `extract` sends, as the Batch API's JSONL line holds it
        (REST camelCase; photos inline, base64)."""
        if not photos:
            raise ExtractionError("The item has no photos to send to Gemini", code="no_photos")
        config = self._config
        return {
            "contents": [
                c.model_dump(mode="json", by_alias=True, exclude_none=True)
                for c in build_contents(photos, context)
            ],
            "systemInstruction": {"parts": [{"text": self.system_prompt}]},
            "generationConfig": {
                "temperature": config.temperature,
                "responseMimeType": config.response_mime_type,
                "responseSchema": response_schema().model_dump(
                    mode="json", by_alias=True, exclude_none=True
                ),
            },
        }

    def read_batch_answer(self, response: dict[str, Any]) -> Extraction:
        try:
            parsed = types.GenerateContentResponse.model_validate(response)
        except ValueError as exc:
            raise ExtractionError(
                f"Gemini's batch answer is not a GenerateContentResponse ({exc})",
                code="gemini_invalid_response",
                retryable=True,
                raw=json.dumps(response)[:20000],
            ) from None
        # The time a batch answer took is the batch's, not this record's: none is given.
        return self._read(parsed, latency_ms=None, batch=True)

    def _call(
        self, contents: list[types.Content]
    ) -> tuple[types.GenerateContentResponse, int, float]:
        """The response, the number of retries it took and the successful call's latency."""
        opts = self.options
        retries = timeouts = 0
        while True:
            self._limiter.acquire()
            started = time.perf_counter()
            try:
                response = self._client.models.generate_content(
                    model=opts.model, contents=contents, config=self._config
                )
                return response, retries, round((time.perf_counter() - started) * 1000, 1)
            except genai_errors.APIError as exc:
                failure = classify_api_error(exc, opts.model)
            except TRANSPORT_ERRORS as exc:
                failure = classify_transport_error(exc, opts.timeout)
            except (genai_errors.UnknownApiResponseError, json.JSONDecodeError) as exc:
                # A 200 whose body is not JSON (a proxy's error page): the SDK cannot parse it.
                failure = _Failure(
                    "gemini_invalid_response",
                    f"Gemini's HTTP response was not JSON ({type(exc).__name__}: {exc})",
                    True,
                )
            if failure.code == "gemini_timeout":
                timeouts += 1
            exhausted = retries >= opts.max_retries or (
                failure.code == "gemini_timeout" and timeouts > opts.max_timeout_retries
            )
            if not failure.retryable or exhausted:
                raise failure.error(retries)
            if failure.retry_after is not None:
                if failure.retry_after > opts.retry_max_delay:
                    raise failure.error(
                        retries,
                        note=f"; the server asked to wait {failure.retry_after:g} s, longer "
                        f"than SCANBATCH_GEMINI_RETRY_MAX_DELAY ({opts.retry_max_delay:g} s)",
                    )
                delay = failure.retry_after
            else:
                delay = backoff_delay(retries, opts.retry_base_delay, opts.retry_max_delay)
            log.info("gemini %s; retry %d in %.2f s", failure.code, retries + 1, delay)
            self._sleep(delay)
            retries += 1


# --- request -----------------------------------------------------------------------------


def response_schema() -> types.Schema:
    """Six optional fields, each {value, confidence}: optional so the model can omit."""

    def field(description: str) -> types.Schema:
        return types.Schema(
            type=types.Type.OBJECT,
            description=description,
            properties={
                "value": types.Schema(type=types.Type.STRING),
                "confidence": types.Schema(type=types.Type.NUMBER, minimum=0, maximum=1),
            },
            required=["value", "confidence"],
            property_ordering=["value", "confidence"],
        )

    return types.Schema(
        type=types.Type.OBJECT,
        properties={key: field(FIELD_DESCRIPTIONS[key]) for key in FIELDS},
        property_ordering=list(FIELDS),
    )


def describe_photo_type(photo_type: str) -> str:
    key = photo_type.strip().lower()
    return _PHOTO_TYPE_NAMES.get(key, key.replace("_", " ") or "photo")


def user_prompt(photos: list[Photo], context: ScanContext | None) -> str:
    """The per-item message: what the photos are and what the app already knows."""
    count = len(photos)
    lines = [f"{count} photo{'s' if count != 1 else ''} of one record, in this order:"]
    for i, photo in enumerate(photos, 1):
        lines.append(f"{i}. {describe_photo_type(photo.photo_type)} ({photo.mime_type})")
    known = []
    if context is not None:
        # json.dumps quotes and escapes: the values are the app's data, never instructions.
        if context.artist_name:
            known.append(f"- Artist, typed in the app: {json.dumps(context.artist_name)}")
        if context.album_title:
            known.append(f"- Album title, typed in the app: {json.dumps(context.album_title)}")
        if context.sticker_text:
            known.append(f"- Sticker text, typed in the app: {json.dumps(context.sticker_text)}")
        if context.detected_upc:
            known.append(
                f"- UPC read by the app's barcode scanner: {json.dumps(context.detected_upc)}"
            )
    if known:
        lines += ["", "Context from the station's app (the photos win when they disagree):"]
        lines += known
    else:
        lines += ["", "No context from the station's app."]
    lines += ["", "Read the six fields from the photos and answer with JSON only."]
    return "\n".join(lines)


def build_contents(photos: list[Photo], context: ScanContext | None) -> list[types.Content]:
    # Each image follows a caption naming it, so the model can tell which photo is the label.
    parts = [types.Part.from_text(text=user_prompt(photos, context))]
    for i, photo in enumerate(photos, 1):
        parts.append(
            types.Part.from_text(text=f"Photo {i}: {describe_photo_type(photo.photo_type)}")
        )
        parts.append(types.Part.from_bytes(data=photo.data, mime_type=photo.mime_type))
    return [types.Content(role="user", parts=parts)]


# --- failures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    code: str
    message: str
    retryable: bool
    retry_after: float | None = None
    raw: str | None = None

    def error(self, retries: int, note: str = "") -> ExtractionError:
        tries = f" (after {retries} retr{'y' if retries == 1 else 'ies'})" if retries else ""
        return ExtractionError(
            f"{self.message}{tries}{note}", code=self.code, retryable=self.retryable, raw=self.raw
        )


def _retry_after(exc: genai_errors.APIError) -> float | None:
    """The wait the server asked for: a Retry-After header, or the google.rpc.RetryInfo
    detail that Gemini puts in the error body instead."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is not None:
        seconds = parse_retry_after(headers.get("retry-after"))
        if seconds is not None:
            return seconds
    details = exc.details if isinstance(exc.details, dict) else {}
    error = details.get("error", details)
    for detail in error.get("details", []) if isinstance(error, dict) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            return parse_duration(detail.get("retryDelay"))
    return None


def classify_api_error(exc: genai_errors.APIError, model: str) -> _Failure:
    code = exc.code
    what = f"{code} {exc.status or ''}".strip()
    said = f": {exc.message}" if exc.message else ""
    raw = json.dumps(exc.details) if exc.details is not None else None
    if code == 429:
        return _Failure(
            "gemini_rate_limited",
            f"Gemini quota exceeded ({what}{said}); lower SCANBATCH_GEMINI_RPM or retry later",
            True,
            _retry_after(exc),
            raw,
        )
    if code == 408 or 500 <= code < 600:
        return _Failure(
            "gemini_unavailable",
            f"Gemini is unavailable ({what}{said})",
            True,
            _retry_after(exc),
            raw,
        )
    # Gemini answers a bad key with 400 INVALID_ARGUMENT "API key not valid", not 401.
    if code in (401, 403) or (code == 400 and "api key" in (exc.message or "").lower()):
        return _Failure(
            "gemini_auth",
            f"Gemini rejected the API key ({what}{said}): check {API_KEY_ENV}",
            False,
            raw=raw,
        )
    if code == 404:
        return _Failure(
            "gemini_model_not_found",
            f"Gemini does not know model '{model}' ({what}{said}): check SCANBATCH_GEMINI_MODEL",
            False,
            raw=raw,
        )
    return _Failure(
        "gemini_bad_request", f"Gemini refused the request ({what}{said})", False, raw=raw
    )


def classify_transport_error(exc: BaseException, timeout: float) -> _Failure:
    if isinstance(exc, TIMEOUT_ERRORS):
        return _Failure(
            "gemini_timeout",
            f"Gemini did not answer within {timeout:g} s; raise SCANBATCH_GEMINI_TIMEOUT if "
            "this repeats",
            True,
        )
    return _Failure(
        "gemini_connection",
        f"Could not reach Gemini ({type(exc).__name__}: {exc}); check the network or the base URL",
        True,
    )


# --- response ----------------------------------------------------------------------------


def _dump(response: types.GenerateContentResponse) -> str:
    return response.model_dump_json(
        exclude_none=True, exclude={"sdk_http_response", "automatic_function_calling_history"}
    )


def _name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def response_text(response: types.GenerateContentResponse) -> str:
    """The answer's text, or an ExtractionError saying why there is none."""
    feedback = response.prompt_feedback
    block = _name(feedback.block_reason) if feedback else None
    if block and block != "BLOCKED_REASON_UNSPECIFIED":
        detail = f" ({feedback.block_reason_message})" if feedback.block_reason_message else ""
        raise ExtractionError(
            f"Gemini blocked the request: blockReason {block}{detail}",
            code="gemini_blocked",
            retryable=False,
            raw=_dump(response),
        )
    if not response.candidates:
        raise ExtractionError(
            "Gemini returned no candidates (and no block reason)",
            code="gemini_no_candidates",
            retryable=True,
            raw=_dump(response),
        )
    candidate = response.candidates[0]
    finish = _name(candidate.finish_reason)
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    # Thought summaries are not the answer; only the answer must parse as JSON.
    text = "".join(p.text for p in parts if p.text and not p.thought)
    if finish in _BLOCKED_FINISH:
        raise ExtractionError(
            f"Gemini withheld the answer: finishReason {finish}",
            code="gemini_blocked",
            retryable=False,
            raw=text or _dump(response),
        )
    if not text.strip():
        raise ExtractionError(
            f"Gemini returned an empty response (finishReason {finish or 'none'})",
            code="gemini_empty_response",
            retryable=True,
            raw=_dump(response),
        )
    if finish == "MAX_TOKENS":
        # A cut-short JSON answer is reported as such rather than as a parse error.
        try:
            json.loads(text)
        except json.JSONDecodeError:
            raise ExtractionError(
                "Gemini's answer was cut short (finishReason MAX_TOKENS)",
                code="gemini_truncated",
                retryable=True,
                raw=text,
            ) from None
    return text


def _output_tokens(usage: types.GenerateContentResponseUsageMetadata | None) -> int | None:
    # Thinking tokens are billed as output; counting them keeps cost comparisons honest.
    if usage is None or usage.candidates_token_count is None:
        return None
    return usage.candidates_token_count + (usage.thoughts_token_count or 0)


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def parse_extraction(text: str) -> Extraction:
    """The six fields from the model's JSON: kept only when the value is a non-empty string,
    confidence clamped to [0, 1], UPC normalised and its check digit verified."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        fenced = _FENCE.match(text)
        try:
            data = json.loads(fenced.group(1)) if fenced else None
        except json.JSONDecodeError:
            data = None
        if data is None:
            raise ExtractionError(
                "Gemini's answer is not valid JSON",
                code="gemini_invalid_json",
                retryable=True,
                raw=text,
            ) from None
    if not isinstance(data, dict):
        raise ExtractionError(
            f"Gemini's answer is JSON but not an object (got {type(data).__name__})",
            code="gemini_invalid_json",
            retryable=True,
            raw=text,
        )
    fields: dict[str, ExtractionField] = {}
    for key, attr in _FIELD_ATTRIBUTES.items():
        item = data.get(key, data.get(attr))
        parsed = _parse_field(item)
        if parsed is not None and attr == "upc":
            parsed = _check_upc(parsed)
        if parsed is not None:
            fields[attr] = parsed
    return Extraction(**fields)


def _parse_field(item: object) -> ExtractionField | None:
    if isinstance(item, str):  # a bare value despite the schema: keep it, confidence unknown
        value, confidence = item, None
    elif isinstance(item, dict):
        value, confidence = item.get("value"), item.get("confidence")
    else:
        return None
    if not isinstance(value, str) or value.strip().lower() in _NON_VALUES:
        return None
    return ExtractionField(value=value.strip(), confidence=_clamp(confidence))


def _clamp(confidence: object) -> float:
    if isinstance(confidence, str):
        try:
            confidence = float(confidence)
        except ValueError:
            return DEFAULT_CONFIDENCE
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        return DEFAULT_CONFIDENCE
    if math.isnan(confidence):
        return DEFAULT_CONFIDENCE
    return min(1.0, max(0.0, float(confidence)))


def _check_upc(field: ExtractionField) -> ExtractionField | None:
    digits = normalize_upc(field.value)
    if digits is not None and upc_check_digit_ok(digits):
        return ExtractionField(value=digits, confidence=field.confidence)
    if digits is None:
        digits = re.sub(r"\D", "", field.value)
        if not digits:  # no digits at all: not a UPC, whatever the model thought
            return None
    return ExtractionField(
        value=digits, confidence=min(field.confidence, UPC_UNVERIFIED_CONFIDENCE)
    )
