"""Completion webhooks, sent per Standard Webhooks (https://www.standardwebhooks.com): when a job
sent with a `callbackUrl` ends, the server POSTs its summary there, signed with
SCANBATCH_WEBHOOK_SECRET, until a 2xx answers or the retry window
(SCANBATCH_WEBHOOK_RETRY_SECONDS) has passed. What is due lives in the store
(`scanbatch.store.webhooks`), so a restart resumes it; `WebhookSender` is the server's thread
that sends it."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from standardwebhooks.webhooks import Webhook

from scanbatch import __version__
from scanbatch.errors import BadRequest, ConfigError
from scanbatch.settings import WEBHOOK_SECRET_ENV, Settings, host_netloc
from scanbatch.store import JobStore
from scanbatch.store.db import utcnow
from scanbatch.store.webhooks import Attempt, Due

log = logging.getLogger(__name__)

FIELD = "callbackUrl"
MAX_URL_LENGTH = 2000
# Seconds before each attempt, the first counted from the job's end, then from the attempt
# before: Standard Webhooks' recommended schedule (times SCANBATCH_WEBHOOK_RETRY_SCALE).
SCHEDULE = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
_SECRET_PREFIX = "whsec_"
_SECRET_BYTES = (24, 64)  # the spec's bounds
_HOW_TO_MAKE_A_SECRET = (
    'set it to whsec_ and the base64 of 32 random bytes (python -c "import base64, secrets; '
    "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\") and restart the "
    "server"
)
WORKERS = 4  # attempts at once: a slow receiver holds one of them for SCANBATCH_WEBHOOK_TIMEOUT
MAX_IN_FLIGHT = 4 * WORKERS  # handed to the pool at once; the rest wait in the store
IDLE_SECONDS = 30.0  # the longest sleep: a wake-up is only missed if an Event set is lost


def webhook_signer() -> Webhook:
    """The signer for SCANBATCH_WEBHOOK_SECRET, read from the environment on each call (as
    GEMINI_API_KEY is), or ConfigError saying what is wrong with it (never what it holds)."""
    secret = os.environ.get(WEBHOOK_SECRET_ENV, "").strip()
    if not secret:
        raise ConfigError(f"{WEBHOOK_SECRET_ENV} is not set: {_HOW_TO_MAKE_A_SECRET}")
    if not secret.startswith(_SECRET_PREFIX):
        raise ConfigError(
            f"{WEBHOOK_SECRET_ENV} does not start with {_SECRET_PREFIX}: {_HOW_TO_MAKE_A_SECRET}"
        )
    encoded = secret.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{WEBHOOK_SECRET_ENV} is not {_SECRET_PREFIX} followed by base64: "
            f"{_HOW_TO_MAKE_A_SECRET}"
        ) from None
    low, high = _SECRET_BYTES
    if not low <= len(key) <= high:
        raise ConfigError(
            f"{WEBHOOK_SECRET_ENV} holds {len(key)} bytes, and Standard Webhooks secrets hold "
            f"{low} to {high}: {_HOW_TO_MAKE_A_SECRET}"
        )
    return Webhook(key)


def check_callback_url(url: str, settings: Settings) -> str:
    """`url` if the server may call it: an absolute http(s) URL of at most 2,000 characters
    whose host (and port) SCANBATCH_WEBHOOK_HOSTS lists; else a 400 saying what to change."""
    if len(url) > MAX_URL_LENGTH:
        raise BadRequest(
            f"{FIELD} is {len(url):,} characters long: at most {MAX_URL_LENGTH:,} are accepted; "
            "send a shorter URL"
        )
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or port == -1
        or not url.isascii()
        or any(c.isspace() or not c.isprintable() for c in url)
    ):
        raise BadRequest(
            f"{FIELD} must be an absolute http:// or https:// URL, e.g. "
            f"https://hooks.example.org/scan-done (non-ASCII characters percent-encoded), got "
            f"{url[:100]!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise BadRequest(
            f"{FIELD} must not carry a user name or password (they would be stored and shown "
            "with the job's deliveries): the receiver checks the signature instead"
        )
    default = 443 if parts.scheme.lower() == "https" else 80
    effective = port or default
    allowed = settings.allowed_webhook_hosts
    names = {host_netloc(parts.hostname, effective)}
    if effective == default:
        names.add(host_netloc(parts.hostname, None))
    if not names & allowed:
        listed = ", ".join(sorted(allowed)) or "empty, so no callback is allowed"
        raise BadRequest(
            f"{FIELD}'s host {host_netloc(parts.hostname, port)} is not in "
            f"SCANBATCH_WEBHOOK_HOSTS ({listed}): use a listed host, or have the server's "
            "operator add it there (host or host:port) and restart the server"
        )
    return url


def check_secret() -> None:
    """A 400 for a callback the server could not sign (no valid SCANBATCH_WEBHOOK_SECRET)."""
    try:
        webhook_signer()
    except ConfigError as exc:
        raise BadRequest(
            f"{FIELD} cannot be used: this server has no valid {exc.message}"
        ) from None


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` (seconds, or an HTTP date) as seconds from `now`; None if absent or
    unreadable."""
    value = (value or "").strip()
    if re.fullmatch(r"[0-9]{1,10}", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_attempt(
    made: int, due_at: datetime, now: datetime, retry_after: float | None, settings: Settings
) -> datetime | None:
    """When to try again after `made` failed attempts: the schedule's next delay, or the
    receiver's `Retry-After` if that is later, never past the window's end (so the last
    attempt is made there). None: the schedule or the window is spent, the delivery fails."""
    deadline = due_at + timedelta(seconds=settings.webhook_retry_seconds)
    if made >= len(SCHEDULE) or now >= deadline:
        return None
    delay = SCHEDULE[made] * settings.webhook_retry_scale
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(now + timedelta(seconds=delay), deadline)


def _error_text(exc: requests.RequestException, timeout: float) -> str:
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s (SCANBATCH_WEBHOOK_TIMEOUT)"
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    kind = "connection failed" if isinstance(exc, requests.ConnectionError) else "request failed"
    return f"{kind}: {reason}"[:500]


class WebhookSender:
    """The server's thread that attempts due deliveries: it wakes when a job's end makes one
    due (`WebhookStore.due_event`) or when the next retry is due, and hands each to a small
    pool, so a slow receiver holds up no other."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.store = store.webhooks
        self.settings = settings
        self._stopping = threading.Event()
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start sending, deliveries left due by a previous server first."""
        if self.settings.allowed_webhook_hosts:
            try:
                webhook_signer()
            except ConfigError as exc:
                log.warning("completion webhooks cannot be signed: %s", exc.message)
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="webhook")
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop, after the attempts under way (each bounded by SCANBATCH_WEBHOOK_TIMEOUT) are
        recorded; the ones not started stay due for the next start."""
        if self._thread is None:
            return
        self._stopping.set()
        self.store.due_event.set()
        self._thread.join()
        assert self._pool is not None
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            # Cleared before looking, so a delivery made due during the look wakes the wait.
            self.store.due_event.clear()
            try:
                wait = self._dispatch()
            except Exception:
                log.exception("completion webhooks: could not read the due deliveries")
                wait = IDLE_SECONDS
            self.store.due_event.wait(wait)

    def _dispatch(self) -> float:
        """Hand what is due to the pool; returns how long to sleep before looking again."""
        with self._lock:
            busy = set(self._in_flight)
        room = MAX_IN_FLIGHT - len(busy)
        if room <= 0:
            return IDLE_SECONDS  # each finished attempt wakes the thread
        assert self._pool is not None
        for delivery in self.store.due(utcnow(), busy, room):
            with self._lock:
                self._in_flight.add(delivery.id)
            busy.add(delivery.id)
            self._pool.submit(self._deliver, delivery)
        if len(busy) >= MAX_IN_FLIGHT:
            return IDLE_SECONDS
        soonest = self.store.next_attempt_at(busy)
        if soonest is None:
            return IDLE_SECONDS
        return min(IDLE_SECONDS, max(0.01, (soonest - utcnow()).total_seconds()))

    def _deliver(self, delivery: Due) -> None:
        try:
            attempt, retry_after = self.attempt(delivery)
            next_at = None
            if attempt.error is not None:
                now = utcnow()
                made = delivery.attempts + 1
                next_at = next_attempt(made, delivery.due_at, now, retry_after, self.settings)
                log.log(
                    logging.INFO if next_at else logging.WARNING,
                    "webhook %s for job %s: attempt %d failed (%s); %s",
                    delivery.id,
                    delivery.job_id,
                    made,
                    attempt.error,
                    f"next at {next_at:%H:%M:%S} UTC" if next_at else "giving up: failed",
                )
            self.store.record_attempt(delivery, attempt, next_at)
        except Exception:
            # Stays due: the next look (or the next start) tries it again.
            log.exception(
                "webhook %s for job %s: could not record an attempt", delivery.id, delivery.job_id
            )
        finally:
            with self._lock:
                self._in_flight.discard(delivery.id)
            self.store.due_event.set()

    def attempt(self, delivery: Due) -> tuple[Attempt, float | None]:
        """POST the delivery once, signed now: (the attempt, the answer's Retry-After)."""
        started, clock = utcnow(), time.monotonic()
        status = retry_after = None
        error: str | None = None
        timeout = self.settings.webhook_timeout
        try:
            # Checked on every attempt: the host list or the secret may have changed since.
            check_callback_url(delivery.url, self.settings)
            signer = webhook_signer()
            signed_at = datetime.now(UTC).replace(microsecond=0)  # the header has seconds
            headers = {
                "webhook-id": delivery.id,
                "webhook-timestamp": str(int(signed_at.timestamp())),
                "webhook-signature": signer.sign(delivery.id, signed_at, delivery.payload),
                "Content-Type": "application/json",
                "User-Agent": f"scanbatch/{__version__}",
            }
            with requests.Session() as session:
                # Only the listed host is called: no proxy from the environment, no .netrc.
                session.trust_env = False
                with session.post(
                    delivery.url,
                    data=delivery.payload.encode(),
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,  # a redirect could lead off the allowed hosts
                    stream=True,  # the receiver's body is never read
                ) as response:
                    status = response.status_code
                    if not 200 <= status < 300:
                        error = f"HTTP {status}"
                        if 300 <= status < 400:
                            error += " (a redirect, which is not followed)"
                        retry_after = retry_after_seconds(
                            response.headers.get("Retry-After"), utcnow()
                        )
        except requests.RequestException as exc:
            error = _error_text(exc, timeout)
        except (BadRequest, ConfigError) as exc:
            error = exc.message
        duration_ms = (time.monotonic() - clock) * 1000
        return Attempt(started, status, error, duration_ms), retry_after
