"""The extractor interface: photos and context in, an `Extraction` out.

A backend is a subclass of `Extractor` registered under a name in the `scanbatch.extractors`
entry-point group (the built-in ones in scanbatch's own `pyproject.toml`, as pytest and llm do
for their plugins). Its options are a pydantic model that forbids unknown names, filled from the
settings object, so a bad option fails before any work starts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from scanbatch.errors import ConfigError
from scanbatch.models import Extraction, Photo, ScanContext
from scanbatch.settings import Settings

ENTRY_POINT_GROUP = "scanbatch.extractors"


class ExtractorOptions(BaseModel):
    """Base of every backend's options: an unknown option is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Extractor(ABC):
    name: ClassVar[str]

    class Options(ExtractorOptions):
        pass

    def __init__(self, options: ExtractorOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    @classmethod
    def settings_options(cls, settings: Settings) -> dict[str, Any]:
        """Option values taken from the settings object, the only source of their defaults."""
        return {}

    @classmethod
    def from_options(cls, options: ExtractorOptions, settings: Settings) -> Extractor:
        """Build the backend from validated options; override to add resources (a client, a
        catalog) that the settings locate."""
        return cls(options)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Extractor:
        """The backend configured by `settings`, with `overrides` replacing single options."""
        values = {**cls.settings_options(settings), **overrides}
        try:
            options = cls.Options.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(describe_option_error(cls.name, cls.Options, exc)) from None
        return cls.from_options(options, settings)

    def request_info(self) -> dict[str, str]:
        """What each request is made with, for the audit trail (e.g. model, prompt version)."""
        return {}

    def close(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing)
        """Release what the backend holds (an HTTP client, say)."""

    def warm(self) -> None:  # noqa: B027  (optional hook: most backends are ready at once)
        """Do, without sending anything, what the first `extract` would pay for (lazy imports,
        schema builds): the processing kernel calls it before its job arrives."""

    @abstractmethod
    def extract(self, photos: list[Photo], context: ScanContext | None) -> Extraction:
        """Read the record's fields. Raise `ExtractionError` with a clear message on failure."""


def describe_option_error(name: str, options: type[BaseModel], exc: ValidationError) -> str:
    err = exc.errors()[0]
    option = ".".join(str(part) for part in err["loc"]) or "options"
    known = ", ".join(sorted(options.model_fields)) or "none"
    if err["type"] == "extra_forbidden":
        return f"Unknown option '{option}' for extractor '{name}': it takes {known}"
    if err["type"] == "missing":
        return f"Extractor '{name}' needs option '{option}' (its options: {known})"
    return f"Extractor '{name}' option '{option}': {err['msg']} (got {err.get('input')!r})"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    # Read once per process: a kernel looks its backend up once per job.
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def extractor_names() -> list[str]:
    return sorted(_entry_points())


def get_extractor_class(name: str) -> type[Extractor]:
    """The backend registered as `name`, imported only now: choosing `ocr` never imports
    google-genai and vice versa."""
    try:
        entry = _entry_points()[name]
    except KeyError:
        known = ", ".join(extractor_names()) or "none"
        raise ConfigError(
            f"Unknown extractor '{name}': set SCANBATCH_EXTRACTOR to one of {known} (backends "
            f"are registered in the '{ENTRY_POINT_GROUP}' entry-point group)"
        ) from None
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, Extractor)):
        raise ConfigError(
            f"Extractor '{name}' ({entry.value}) is not a scanbatch.extractors.Extractor class"
        )
    return cls


def check_extractor(name: str, settings: Settings, **overrides: Any) -> None:
    """Validate backend `name`'s options (and that it exists) without building it: for callers
    that build it elsewhere, e.g. in a kernel. Raises `ConfigError` naming the bad option."""
    cls = get_extractor_class(name)
    try:
        cls.Options.model_validate({**cls.settings_options(settings), **overrides})
    except ValidationError as exc:
        raise ConfigError(describe_option_error(name, cls.Options, exc)) from None


def create_extractor(name: str, settings: Settings, **overrides: Any) -> Extractor:
    """Build backend `name` from the settings object, each override replacing one option
    (e.g. `model="gemini-x"`). Options are validated before any work: an unknown or bad option
    raises `ConfigError` naming it."""
    return get_extractor_class(name).from_settings(settings, **overrides)
