"""A disk cache of extractions, so that re-running an experiment costs nothing.

The key is the hash of everything that decides the answer: the extractor, its answer-changing
options, the prompt text's hash, each photo's bytes hash, type and MIME type, the app's
context, the catalog an extractor reads (when it reads one), and the repeat number (repeat k
asks the model again, on purpose). Only successful extractions are kept: a 429 or a malformed
answer is worth asking again next time."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_key(parts: dict[str, Any]) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class DiskCache:
    """One JSON file per key under `root/<2 hex>/<key>.json`, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # a torn file from a killed run: ask again, then overwrite it

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(value)}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
