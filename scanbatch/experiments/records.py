"""Run records: each run is a folder `data/experiments/<run>/` with `run.json` (when, which
dataset and catalog, each variant's settings and prompt hash, whether it could run) and
`records.jsonl` (one line per variant, repeat and item: each field's value and confidence,
the match, latency, tokens, error, whether the cache answered). Never the server's store. (Not
`results.jsonl`, a job folder's file with lines of another shape; runs recorded before the
rename are still read.)

Past runs are listed and compared again from these files alone."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanbatch.errors import BadRequest, NotFound

RUN_META = "run.json"
RUN_RECORDS = "records.jsonl"
EARLIER_RUN_RECORDS = "results.jsonl"  # the name runs recorded before issue 19 use
RUN_TRUTH = "truth.json"
CACHE_DIR = "cache"
DATASETS_DIR = "datasets"  # where dataset zips were once unpacked, shared: never a run name
RESERVED = (CACHE_DIR, DATASETS_DIR)
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_name() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class RunRecord:
    path: Path
    meta: dict[str, Any]
    records: list[dict[str, Any]]
    truth: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def variants(self) -> list[dict[str, Any]]:
        return self.meta.get("variants", [])

    @property
    def runnable(self) -> list[str]:
        return [v["name"] for v in self.variants if v.get("runnable")]

    def records_for(self, variant: str, repeat: int | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if r["variant"] == variant and (repeat is None or r["repeat"] == repeat)
        ]


class RunWriter:
    """Writes one run's folder; `append` is called from the item threads."""

    def __init__(self, experiments_dir: Path, name: str | None = None) -> None:
        name = name or new_run_name()
        if not _RUN_NAME.match(name):
            raise BadRequest(
                f"run name {name!r}: use letters, digits, '.', '_' and '-' (at most 100)"
            )
        self.path = Path(experiments_dir) / name
        if name in RESERVED or (self.path / RUN_META).exists():
            raise BadRequest(
                f"run {name!r} already exists in {experiments_dir}: choose another name, or "
                "leave it out for a dated one"
            )
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._results = open(self.path / RUN_RECORDS, "a", encoding="utf-8")  # noqa: SIM115

    def write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self.path / f".{RUN_META}.tmp"
        tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / RUN_META)

    def write_truth(self, items: list[dict[str, Any]]) -> None:
        (self.path / RUN_TRUTH).write_text(
            json.dumps({"items": items}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self._results.write(line)
            self._results.flush()

    def close(self) -> None:
        self._results.close()

    def discard(self) -> None:
        """Close, and remove the run's folder if this writer made it: a run refused before it
        started (a bad dataset) leaves nothing behind."""
        self.close()
        if self._created:
            shutil.rmtree(self.path, ignore_errors=True)


def _run_path(experiments_dir: Path, run: str | Path) -> Path:
    p = Path(run)
    if (p / RUN_META).is_file():
        return p
    q = Path(experiments_dir) / str(run)
    if _RUN_NAME.match(str(run)) and (q / RUN_META).is_file():
        return q
    known = [r["run"] for r in list_runs(experiments_dir)][:10]
    raise NotFound(
        f"no experiment run {str(run)!r} in {experiments_dir}; recent runs: "
        f"{', '.join(known) or 'none yet'} (`experiment list` shows them all)"
    )


def load_run(experiments_dir: Path, run: str | Path) -> RunRecord:
    """A past run by name (under `experiments_dir`) or by folder path."""
    path = _run_path(experiments_dir, run)
    meta = json.loads((path / RUN_META).read_text(encoding="utf-8"))
    records = []
    results = path / RUN_RECORDS
    if not results.is_file():
        results = path / EARLIER_RUN_RECORDS
    if results.is_file():
        for line in results.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line of an interrupted run: that item did not finish
    truth_path = path / RUN_TRUTH
    truth = (
        json.loads(truth_path.read_text(encoding="utf-8"))["items"] if truth_path.is_file() else []
    )
    return RunRecord(path, meta, records, truth)


def list_runs(experiments_dir: Path) -> list[dict[str, Any]]:
    """Summaries of past runs, newest first."""
    root = Path(experiments_dir)
    out = []
    if not root.is_dir():
        return out
    for meta_path in root.glob(f"*/{RUN_META}"):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            continue
        out.append(
            {
                "run": meta_path.parent.name,
                "createdAt": meta.get("createdAt"),
                "finishedAt": meta.get("finishedAt"),
                "dataset": (meta.get("dataset") or {}).get("path"),
                "items": (meta.get("dataset") or {}).get("items"),
                "repeat": meta.get("repeat"),
                "variants": [v["name"] for v in meta.get("variants", [])],
            }
        )
    out.sort(key=lambda r: r.get("createdAt") or "", reverse=True)
    return out
