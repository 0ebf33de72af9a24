"""Extractor backends. Each registers itself here by name, imported only when chosen."""

from __future__ import annotations

from scanbatch.extractors.base import (
    Extractor,
    create_extractor,
    extractor_names,
    get_extractor_class,
    register,
)


def _gemini() -> type[Extractor]:
    from scanbatch.extractors.gemini import GeminiExtractor

    return GeminiExtractor


def _ocr() -> type[Extractor]:
    from scanbatch.extractors.ocr import OcrExtractor

    return OcrExtractor


register("gemini", _gemini)
register("ocr", _ocr)

__all__ = [
    "Extractor",
    "create_extractor",
    "extractor_names",
    "get_extractor_class",
    "register",
]
