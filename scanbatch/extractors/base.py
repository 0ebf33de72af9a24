"""The extractor interface: photos and context in, an `Extraction` out.

A backend is a subclass of `Extractor` with one method, registered by name. Options are a
pydantic model so that settings are validated before any work starts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel

from scanbatch.errors import ConfigError
from scanbatch.models import Extraction, Photo, ScanContext
from scanbatch.settings import Settings


class Extractor(ABC):
    name: ClassVar[str]

    class Options(BaseModel):
        pass

    def __init__(self, options: BaseModel | None = None) -> None:
        self.options = options if options is not None else self.Options()

    @classmethod
    def from_settings(cls, settings: Settings) -> Extractor:
        """Build the backend from the settings object; override to read backend settings."""
        return cls()

    @abstractmethod
    def extract(self, photos: list[Photo], context: ScanContext | None) -> Extraction:
        """Read the record's fields. Raise `ExtractionError` with a clear message on failure."""


_REGISTRY: dict[str, Callable[[], type[Extractor]]] = {}


def register(name: str, loader: Callable[[], type[Extractor]]) -> None:
    """Register a backend by name. `loader` imports lazily so that choosing `ocr` never
    imports google-genai and vice versa."""
    _REGISTRY[name] = loader


def extractor_names() -> list[str]:
    return sorted(_REGISTRY)


def get_extractor_class(name: str) -> type[Extractor]:
    try:
        loader = _REGISTRY[name]
    except KeyError:
        known = ", ".join(extractor_names()) or "none"
        raise ConfigError(
            f"Unknown extractor '{name}': set SCANBATCH_EXTRACTOR to one of {known}"
        ) from None
    return loader()


def create_extractor(name: str, settings: Settings) -> Extractor:
    return get_extractor_class(name).from_settings(settings)
