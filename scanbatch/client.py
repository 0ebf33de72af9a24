"""A typed Python client for the scanbatch HTTP API: the station's batch routes and the review
routes. The workbench, the CLI's `export` and tests talk to the server only through it, so the
server stays the one writer of the store.

Every failure raises `ApiError`, carrying the HTTP status and the server's message (a server
that cannot be reached is status 503 with a message saying so)."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from scanbatch.audit import ReviewItem, ReviewPage, ReviewView, version_of
from scanbatch.errors import ScanbatchError
from scanbatch.models import JobList, JobView, MatchedAlbum, UploadTicket

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "SCANBATCH_URL"
TOKEN_ENV = "SCANBATCH_TOKEN"
FINISHED = ("completed", "failed")

# A photo to upload: a path, raw bytes, or (file name, bytes).
Upload = Path | str | bytes | tuple[str, bytes]


class ApiError(ScanbatchError):
    """The server refused or failed the request; `status` and `message` are the server's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


class StaleVersion(ApiError):
    """412: someone saved the record since the version sent; `current` is their review."""

    def __init__(self, message: str, current: ReviewView | None) -> None:
        super().__init__(412, message)
        self.current = current


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        self.timeout = timeout
        self.session = requests.Session()

    def __repr__(self) -> str:  # never the token
        return f"Client({self.url!r})"

    # -- plumbing -------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.session.request(
                method,
                f"{self.url}{path}",
                headers=headers,
                timeout=kwargs.pop("timeout", self.timeout),
                **kwargs,
            )
        except requests.ConnectionError:
            raise ApiError(
                503,
                f"Cannot reach the scanbatch server at {self.url}: is it running? "
                "(`make run` starts it)",
            ) from None
        except requests.Timeout:
            raise ApiError(504, f"The server at {self.url} did not answer in time") from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, _message(response))
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # -- the station's routes -------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    def submit(
        self,
        images: Sequence[Upload],
        manifest: dict[str, Any] | list[Any] | str,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Upload a batch; returns the job id (the server answered 202)."""
        files = [("images", _upload(i, n)) for n, i in enumerate(images)]
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = self._json(
            "POST",
            "/library/scan/batch",
            files=files,
            data={"manifest": text},
            headers=headers,
            timeout=max(self.timeout, 120),
        )
        return body["jobId"]

    def job(self, job_id: str) -> JobView:
        return JobView.model_validate(self._json("GET", f"/library/scan/batch/{job_id}"))

    def wait(
        self,
        job_id: str,
        *,
        on_progress: Callable[[JobView], None] | None = None,
        timeout: float = 900.0,
        max_interval: float = 2.0,
    ) -> JobView:
        """Poll until the job has finished, honouring `Retry-After` (capped at `max_interval`
        so progress stays lively); `on_progress` sees every view polled."""
        deadline = time.monotonic() + timeout
        while True:
            response = self._request("GET", f"/library/scan/batch/{job_id}")
            view = JobView.model_validate(response.json())
            if on_progress is not None:
                on_progress(view)
            if view.status in FINISHED:
                return view
            if time.monotonic() >= deadline:
                raise ApiError(
                    504, f"Job {job_id} did not finish within {timeout:.0f} s; it still runs"
                )
            time.sleep(_retry_after(response, max_interval))

    def jobs(self, limit: int = 20, offset: int = 0) -> JobList:
        params = {"limit": limit, "offset": offset}
        return JobList.model_validate(self._json("GET", "/library/scan/batch", params=params))

    def upload_ticket(self, *, photos: int, bytes: int, origin: str) -> UploadTicket:
        """A ticket for the page at `origin` to send one batch of `photos` images of `bytes`
        bytes in all straight to the server (the workbench's browser upload)."""
        body = {"photos": photos, "bytes": bytes, "origin": origin}
        return UploadTicket.model_validate(
            self._json("POST", "/library/scan/upload-tickets", json=body)
        )

    def cancel(self, job_id: str) -> JobView:
        return JobView.model_validate(self._json("POST", f"/library/scan/batch/{job_id}/cancel"))

    def delete(self, job_id: str, *, force: bool = False) -> None:
        params = {"force": "true"} if force else {}
        self._request("DELETE", f"/library/scan/batch/{job_id}", params=params)

    # -- the review routes ----------------------------------------------------------------

    def review_items(
        self,
        *,
        state: str = "unreviewed",
        sort: str = "confidence",
        job_id: str | None = None,
        user_id: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> ReviewPage:
        params = {"state": state, "sort": sort, "limit": limit, "offset": offset}
        if job_id:
            params["jobId"] = job_id
        if user_id:
            params["userId"] = user_id
        return ReviewPage.model_validate(
            self._json("GET", "/library/scan/review/items", params=params)
        )

    def photo(self, job_id: str, item_index: int, n: int, *, size: int | None = None) -> bytes:
        """The photo's bytes; with `size`, a JPEG whose longer side is at most `size`."""
        params = {"size": size} if size else {}
        path = f"/library/scan/batch/{job_id}/items/{item_index}/photos/{n}"
        return self._request("GET", path, params=params).content

    def save_review(
        self,
        job_id: str,
        item_index: int,
        fields: dict[str, str | None],
        matched_album_id: int | None,
        note: str | None = None,
        *,
        version: str | None = None,
    ) -> ReviewView:
        """Save the record's truth. With `version` (the item's, as it was opened) the save is
        refused with `StaleVersion` if anyone saved since; without, it saves over anything."""
        body = {"fields": fields, "matchedAlbumId": matched_album_id, "note": note}
        path = f"/library/scan/batch/{job_id}/items/{item_index}/review"
        headers = {}
        if version == version_of(0):
            headers["If-None-Match"] = "*"
        elif version is not None:
            headers["If-Match"] = version
        try:
            return ReviewView.model_validate(self._json("PUT", path, json=body, headers=headers))
        except ApiError as exc:
            if exc.status != 412:
                raise
            history = self.review_history(job_id, item_index)
            raise StaleVersion(exc.message, history[-1] if history else None) from None

    def next_review(
        self,
        *,
        sort: str = "confidence",
        state: str = "unreviewed",
        job_id: str | None = None,
        user_id: str | None = None,
    ) -> ReviewItem | None:
        """The next record to review, leased to this client's user; None when none is left."""
        body: dict[str, Any] = {"sort": sort, "state": state}
        if job_id:
            body["jobId"] = job_id
        if user_id:
            body["userId"] = user_id
        response = self._request("POST", "/library/scan/review/next", json=body)
        return None if response.status_code == 204 else ReviewItem.model_validate(response.json())

    def take_lease(self, job_id: str, item_index: int) -> ReviewItem:
        """Lease a record picked from the queue (409 if someone else is on it)."""
        path = f"/library/scan/batch/{job_id}/items/{item_index}/lease"
        return ReviewItem.model_validate(self._json("POST", path))

    def release_lease(self, job_id: str, item_index: int) -> None:
        self._request("DELETE", f"/library/scan/batch/{job_id}/items/{item_index}/lease")

    def review_history(self, job_id: str, item_index: int) -> list[ReviewView]:
        body = self._json("GET", f"/library/scan/batch/{job_id}/items/{item_index}/reviews")
        return [ReviewView.model_validate(r) for r in body["reviews"]]

    def metrics(
        self,
        group_by: str = "none",
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        prompt_version: str | None = None,
        model: str | None = None,
        extractor: str | None = None,
    ) -> dict[str, Any]:
        """The metrics route's body: reviewed-only figures and estimates over every finished
        record in scope (times: ISO 8601 with a zone, or aware datetimes)."""
        params = {"groupBy": group_by}
        for name, value in (
            ("since", since),
            ("until", until),
            ("promptVersion", prompt_version),
            ("model", model),
            ("extractor", extractor),
        ):
            if value is not None:
                params[name] = value.isoformat() if isinstance(value, datetime) else value
        return self._json("GET", "/library/scan/review/metrics", params=params)

    def metrics_frame(self, group_by: str = "none") -> pd.DataFrame:
        """One row per group and field: n, accuracy, similarity, ECE."""
        import pandas as pd

        rows = [
            {
                "group": g["group"],
                "field": name,
                "n": f["n"],
                "accuracy": f["accuracy"],
                "similarity": f["similarity"],
                "ece": f["ece"],
            }
            for g in self.metrics(group_by)["groups"]
            for name, f in g["fields"].items()
        ]
        columns = ["group", "field", "n", "accuracy", "similarity", "ece"]
        return pd.DataFrame(rows, columns=columns)

    def export_dataset(self, folder: Path | str, *, since: str | None = None) -> Path:
        """Download the golden set (every reviewed item) into `folder` as a dataset folder:
        photos, manifest.json, truth.json, results.jsonl. The zip is streamed to a temporary
        file first, so a broken download leaves no half-written dataset."""
        folder = Path(folder)
        params = {"since": since} if since else {}
        response = self._request(
            "GET", "/library/scan/review/dataset", params=params, stream=True, timeout=600
        )
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / ".download.zip.part"
        try:
            with partial.open("wb") as fh:
                for chunk in response.iter_content(1024 * 1024):
                    fh.write(chunk)
            with zipfile.ZipFile(partial) as zf:
                zf.extractall(folder)
        except (requests.RequestException, zipfile.BadZipFile) as exc:
            raise ApiError(502, f"The dataset download broke off: {exc}; try again") from None
        finally:
            partial.unlink(missing_ok=True)
        return folder

    def catalog_search(self, q: str, limit: int = 10) -> list[MatchedAlbum]:
        body = self._json("GET", "/library/scan/catalog/search", params={"q": q, "limit": limit})
        return [MatchedAlbum.model_validate(a) for a in body["albums"]]


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    text = response.text.strip()[:200]
    return text or f"HTTP {response.status_code} from the server"


def _retry_after(response: requests.Response, cap: float) -> float:
    raw = response.headers.get("Retry-After", "")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = cap
    return max(0.05, min(seconds, cap))


def _upload(item: Upload, n: int) -> tuple[str, io.BytesIO | bytes]:
    if isinstance(item, tuple):
        return item[0], item[1]
    if isinstance(item, bytes):
        return f"photo{n}", item
    path = Path(item)
    return path.name, path.read_bytes()
