"""Extractor backends, found through the `scanbatch.extractors` entry-point group and imported
only when chosen."""

from __future__ import annotations

from scanbatch.extractors.base import (
    ENTRY_POINT_GROUP,
    Extractor,
    ExtractorOptions,
    check_extractor,
    create_extractor,
    extractor_names,
    get_extractor_class,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Extractor",
    "ExtractorOptions",
    "check_extractor",
    "create_extractor",
    "extractor_names",
    "get_extractor_class",
]
