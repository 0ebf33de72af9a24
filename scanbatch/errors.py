"""One exception family. Every error carries the HTTP status it maps to and a message that
says what is wrong and how to fix it; the web layer turns any of them into
``{"status": <code>, "message": <message>}``."""

from __future__ import annotations


class ScanbatchError(Exception):
    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, object]:
        return {"status": self.status, "message": self.message}


class BadRequest(ScanbatchError):
    """Malformed input (manifest, image, query parameter)."""

    status = 400


class Unauthorized(ScanbatchError):
    status = 401


class Forbidden(ScanbatchError):
    status = 403


class NotFound(ScanbatchError):
    status = 404


class Conflict(ScanbatchError):
    status = 409


class Gone(ScanbatchError):
    """What was here was removed on purpose (a photo the retention pruned): do not ask again."""

    status = 410


class PreconditionFailed(ScanbatchError):
    """An If-Match / If-None-Match that no longer holds: someone saved meanwhile."""

    status = 412


class PayloadTooLarge(ScanbatchError):
    status = 413


class Unprocessable(ScanbatchError):
    status = 422


class DiskFull(ScanbatchError):
    """A write found no space left on the disk holding `path` (ENOSPC or EDQUOT). Nothing
    half-written stays behind; the same request succeeds once space is freed."""

    status = 507

    def __init__(self, path: object) -> None:
        super().__init__(
            f"The disk holding {path} is full: nothing was saved. Free some space there "
            "(`scanbatch usage` shows what takes it; `scanbatch prune` removes old photos) "
            "and try again."
        )


class StoreLocked(ScanbatchError):
    """The DuckDB file is held by another process (DuckDB allows one writer per file)."""

    status = 503


class ConfigError(ScanbatchError):
    """A setting is missing or invalid (e.g. GEMINI_API_KEY for the gemini extractor)."""

    status = 500


class ExtractionError(ScanbatchError):
    """One item could not be extracted. ``code`` is machine-readable, ``retryable`` tells the
    client whether submitting the item again may help, ``raw`` keeps whatever the backend
    answered for the audit trail."""

    status = 502

    def __init__(
        self,
        message: str,
        *,
        code: str = "extraction_failed",
        retryable: bool = False,
        raw: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.raw = raw


class GoogleBatchError(ScanbatchError):
    """A call to Google's Files or Batch API failed. ``retryable`` tells the caller whether
    the same call may succeed later (network, 408, 429, 5xx) or never will as it is (a bad key,
    a bad request, an unknown name); ``code`` is Google's HTTP status, None when none came."""

    status = 502

    def __init__(self, message: str, *, retryable: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
