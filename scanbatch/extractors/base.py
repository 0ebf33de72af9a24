"""The extractor interface: photos and context in, an `Extraction` out.

A backend is a subclass of `Extractor` registered under a name in the `scanbatch.extractors`
entry-point group (the built-in ones in scanbatch's own `pyproject.toml`, as pytest and llm do
for their plugins). Its options are a pydantic model that forbids unknown names and holds their
defaults and descriptions; each is settable as SCANBATCH_<EXTRACTOR>_<OPTION>. `create_extractor`
and `check_extractor` are the one way to build or validate a backend, so a bad option fails
before any work starts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from scanbatch.errors import ConfigError
from scanbatch.models import Extraction, Photo, ScanContext
from scanbatch.settings import ENV_PREFIX, Settings

if TYPE_CHECKING:
    from scanbatch.backlog.google import GoogleBatches
    from scanbatch.catalog import Matcher

ENTRY_POINT_GROUP = "scanbatch.extractors"


class ExtractorOptions(BaseModel):
    """Base of every backend's options: an unknown option is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Extractor(ABC):
    name: ClassVar[str]

    class Options(ExtractorOptions):
        pass

    # Whether the backend reads the catalog while it extracts (the offline reader does, to tell
    # an artist line from a title line): `create_extractor` then hands it one.
    reads_catalog: ClassVar[bool] = False
    # Options whose value is a core setting's (option name -> `Settings` field): that setting's
    # variable sets them (e.g. SCANBATCH_PROMPT_VERSION), not SCANBATCH_<EXTRACTOR>_<OPTION>.
    option_settings: ClassVar[Mapping[str, str]] = {}
    # Whether the backend's requests can go through its provider's batch API (the backlog:
    # `batch_request` and `read_batch_answer`), as llm's models declare `can_stream`. A
    # backend that cannot runs backlog jobs interactively, and the job says so.
    can_batch: ClassVar[bool] = False

    def __init__(self, options: ExtractorOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    @classmethod  # noqa: B027  (an optional hook: most backends need nothing from it)
    def check_environment(cls) -> None:
        """Raise `ConfigError` when what the backend needs from the process environment (an
        API key: secrets are never options) is missing."""

    @classmethod
    def from_options(
        cls, options: ExtractorOptions, settings: Settings, catalog: Matcher | None = None
    ) -> Extractor:
        """Build the backend from validated options and, for one that `reads_catalog`, the
        catalog it reads (None: none); override to add resources (a client) the settings
        locate."""
        return cls(options)

    def request_info(self) -> dict[str, str]:
        """What each request is made with, for the audit trail (e.g. model, prompt version)."""
        return {}

    def close(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing)
        """Release what the backend holds (an HTTP client, say)."""

    def warm(self) -> None:  # noqa: B027  (optional hook: most backends are ready at once)
        """Do, without sending anything, what the first `extract` would pay for (lazy imports,
        schema builds): the processing kernel calls it before its job arrives."""

    def batch_client(self) -> GoogleBatches:
        """The batch API client this backend's batches go through (its key, its endpoint)."""
        raise NotImplementedError(f"extractor '{self.name}' cannot batch")

    def batch_model(self) -> str:
        """The model a batch of this backend's requests is created for."""
        raise NotImplementedError(f"extractor '{self.name}' cannot batch")

    def batch_request(self, photos: list[Photo], context: ScanContext | None) -> dict[str, Any]:
        """One record's request as a line of the provider's batch file holds it (its JSON):
        the same request `extract` sends."""
        raise NotImplementedError(f"extractor '{self.name}' cannot batch")

    def read_batch_answer(self, response: dict[str, Any]) -> Extraction:
        """The fields from the provider's answer to one `batch_request` (its JSON), read as
        `extract` reads an answer; `ExtractionError` when there are none."""
        raise NotImplementedError(f"extractor '{self.name}' cannot batch")

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


def extractor_names(*, shipped_only: bool = False) -> list[str]:
    """Every registered backend; `shipped_only`: those scanbatch itself registers."""
    found = _entry_points()
    return sorted(n for n, ep in found.items() if not shipped_only or _shipped(ep))


def _shipped(entry: EntryPoint) -> bool:
    return entry.dist is not None and entry.dist.name == "scanbatch"


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


def env_prefix(name: str) -> str:
    """Where backend `name`'s options are read from: `SCANBATCH_GEMINI_` for `gemini`."""
    return f"{ENV_PREFIX}{name.upper().replace('-', '_')}_"


def env_options(cls: type[Extractor]) -> list[str]:
    """The options of `cls` that a `SCANBATCH_<EXTRACTOR>_<OPTION>` variable sets."""
    return [name for name in cls.Options.model_fields if name not in cls.option_settings]


def _options(cls: type[Extractor], settings: Settings, overrides: Mapping[str, Any]) -> Any:
    """The options `cls` is built with: its own defaults, replaced by the core settings it
    takes, then by its SCANBATCH_<EXTRACTOR>_* variables (read with `settings`; settings made
    from kernel parameters read none), then by `overrides`, validated once."""
    from_env = {
        name: value
        for name, value in settings.environment(env_prefix(cls.name)).items()
        if name in env_options(cls)
    }
    values = {
        **{option: getattr(settings, field) for option, field in cls.option_settings.items()},
        **from_env,
        **overrides,
    }
    try:
        return cls.Options.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = str(err["loc"][0]) if err["loc"] else ""
        if option in from_env and option not in overrides:
            variable = env_prefix(cls.name) + option.upper()
            raise ConfigError(f"{variable}: {err['msg']} (got {err.get('input')!r})") from None
        raise ConfigError(describe_option_error(cls.name, cls.Options, exc)) from None


def check_extractor(name: str, settings: Settings, **overrides: Any) -> ExtractorOptions:
    """Validate backend `name` (that it exists, its options, what it needs from the
    environment) without building it, and return the options it would be built with: for
    callers that build it elsewhere, e.g. in a kernel. Raises `ConfigError` naming the bad
    option or variable."""
    cls = get_extractor_class(name)
    cls.check_environment()
    return _options(cls, settings, overrides)


# `create_extractor`'s catalog when none is given: the snapshot the settings name.
SETTINGS_CATALOG: Any = object()


def create_extractor(
    name: str, settings: Settings, *, catalog: Any = SETTINGS_CATALOG, **overrides: Any
) -> Extractor:
    """Build backend `name` from the settings object, each override replacing one option
    (e.g. `model="gemini-x"`) before it is built. Options are validated before any work: an
    unknown or bad option raises `ConfigError` naming it. A backend that `reads_catalog` gets
    `catalog` (a `scanbatch.catalog.Matcher`, or None for none), by default the settings'
    snapshot."""
    cls = get_extractor_class(name)
    cls.check_environment()
    options = _options(cls, settings, overrides)
    if not cls.reads_catalog:
        catalog = None
    elif catalog is SETTINGS_CATALOG:
        catalog = snapshot_catalog(settings.catalog_snapshot, settings.match_min_score)
    return cls.from_options(options, settings, catalog)


def snapshot_catalog(path: Path | None, min_score: float) -> Matcher | None:
    """The catalog matcher of a Parquet snapshot (cached by the file's stamp), or None when
    there is no snapshot."""
    if path is None or not Path(path).exists():
        return None
    from scanbatch.catalog import load_matcher

    return load_matcher(path, min_score)
