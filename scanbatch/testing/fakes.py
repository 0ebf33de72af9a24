"""A fake extractor: a real `Extractor` subclass whose answers come from each item's context,
so tests can script success, failure and latency per item.

Registered as `fake` and `fake-broken` through the `scanbatch.extractors` entry-point group,
like any plugin: `tests/entry_points/` holds a dist-info folder declaring them, and
`tests/conftest.py` puts it on sys.path and on the PYTHONPATH that kernels inherit. They are
registered only there: a station's server never lists them."""

from __future__ import annotations

import os
import threading
import time
from typing import ClassVar

from scanbatch.errors import ExtractionError
from scanbatch.extractors import Extractor
from scanbatch.models import Extraction, ExtractionField, Photo, ScanContext, Usage


class FakeExtractor(Extractor):
    """`context.stickerText` scripts the item: `fail` raises an ExtractionError, `crash` raises
    a plain exception, `sleep:<seconds>` waits first, `pid` reads the label as the reading
    process's id (which kernel ran the job), `confidence:<artist>,<title>` sets the two
    confidences (0.9 and 0.8 otherwise: a reader of chosen calibration). Artist and title
    echo the context."""

    name = "fake"
    calls: ClassVar[list[int]] = []
    active = 0
    max_active = 0
    _lock = threading.Lock()

    warmed = False

    @classmethod
    def reset(cls) -> None:
        cls.calls = []
        cls.active = cls.max_active = 0

    def warm(self) -> None:
        self.warmed = True

    def extract(self, photos: list[Photo], context: ScanContext | None) -> Extraction:
        script = (context.sticker_text if context else None) or ""
        cls = type(self)
        with cls._lock:
            cls.calls.append(len(photos))
            cls.active += 1
            cls.max_active = max(cls.max_active, cls.active)
        try:
            if script.startswith("sleep:"):
                time.sleep(float(script.split(":", 1)[1]))
            if script == "fail":
                raise ExtractionError("the fake model refused", code="blocked", raw="{}")
            if script == "crash":
                raise RuntimeError("fake crash")
            artist_confidence, title_confidence = 0.9, 0.8
            if script.startswith("confidence:"):
                artist, title = script.split(":", 1)[1].split(",")
                artist_confidence, title_confidence = float(artist), float(title)
            fields = {}
            if script == "pid":  # which process read it: the kernel that ran the job
                fields["label_name"] = ExtractionField(value=str(os.getpid()), confidence=1.0)
            if context and context.artist_name:
                fields["artist_name"] = ExtractionField(
                    value=context.artist_name, confidence=artist_confidence
                )
            if context and context.album_title:
                fields["album_title"] = ExtractionField(
                    value=context.album_title, confidence=title_confidence
                )
            mimes = ",".join(p.mime_type for p in photos)
            return Extraction(
                **fields,
                usage=Usage(
                    extractor="fake",
                    model="fake-1",
                    input_tokens=10,
                    output_tokens=5,
                    raw_response=mimes,
                ),
            )
        finally:
            with cls._lock:
                cls.active -= 1


class BrokenExtractor(FakeExtractor):
    """Cannot be built: stands for a backend whose configuration is wrong in the kernel."""

    name = "fake-broken"

    @classmethod
    def from_options(cls, options, settings, catalog=None):
        from scanbatch.errors import ConfigError

        raise ConfigError("fake-broken cannot start: FAKE_SETTING is missing")
