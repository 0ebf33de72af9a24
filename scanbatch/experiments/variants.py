"""Variants: what to compare. A variant is an extractor plus the options that change its
answers (model, prompt version, temperature, any other option of that extractor).

Everything is validated before any photo is sent: an unknown extractor, an option the
extractor does not have, a bad value or an unknown prompt version is a BadRequest naming the
variant and the fix. `build_extractor` is the one place a variant becomes an extractor, through
the one factory (`create_extractor`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from scanbatch.errors import BadRequest, ConfigError
from scanbatch.extractors import (
    Extractor,
    create_extractor,
    extractor_names,
    get_extractor_class,
)
from scanbatch.prompts import load_prompt, prompt_versions
from scanbatch.settings import Settings

if TYPE_CHECKING:
    from scanbatch.catalog import Matcher

# The comparison the notebook and the CLI run when given none: the two shipped prompts on
# Gemini, and the offline extractor.
DEFAULT_VARIANTS: list[dict[str, Any]] = [
    {"extractor": "gemini", "prompt_version": "v1"},
    {"extractor": "gemini", "prompt_version": "v2"},
    {"extractor": "ocr"},
]

# Options that change how a request is sent but not what comes back: they stay out of the
# cache key, so that, e.g., a longer timeout still finds the earlier answers. The prompt
# version is replaced by the hash of the prompt's text (a file edited in place must miss).
NOT_IN_CACHE_KEY = frozenset(
    {
        "timeout",
        "max_retries",
        "max_timeout_retries",
        "rpm",
        "retry_base_delay",
        "retry_max_delay",
        "prompts_dir",
        "prompt_version",
    }
)
# Secrets come from the environment only, never from a variant (which is written to disk).
FORBIDDEN_OPTIONS = frozenset({"api_key"})
# Shorthands a variant may give at its top level, each the extractor option of the same name.
SHORTHANDS = ("model", "prompt_version", "temperature")

# How a variant's requests are sent: one by one (`interactive`) or all in one Google batch
# (`batch`: half the price, answered within 24 hours). Not in the cache key: the request is the
# same, so an answer cached in one mode serves the other.
MODES = ("interactive", "batch")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@=+-]*$")
_SPEC = re.compile(r"^(?P<extractor>[A-Za-z0-9_.-]+)(?::(?P<prompt>[^@]+))?(?:@(?P<model>.+))?$")


class Variant(BaseModel):
    """One variant. `name` defaults to a label built from the rest (e.g. `gemini/v2`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    extractor: str
    name: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    temperature: float | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    concurrency: int | None = Field(None, ge=1, le=64)
    mode: Literal["interactive", "batch"] = "interactive"

    @property
    def batch(self) -> bool:
        return self.mode == "batch"

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = [self.extractor]
        if self.prompt_version:
            parts.append(f"/{self.prompt_version}")
        if self.model:
            parts.append(f"@{self.model}")
        if self.temperature is not None:
            parts.append(f" t={self.temperature:g}")
        for key, value in sorted(self.options.items()):
            parts.append(f" {key}={value}")
        if self.batch:  # the same variant may run both ways in one comparison
            parts.append(" batch")
        return "".join(parts)

    def overrides(self) -> dict[str, Any]:
        """Every extractor option this variant sets (shorthands merged into `options`)."""
        out = dict(self.options)
        for key in SHORTHANDS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def parse_variant(spec: str | Mapping[str, Any] | Variant, position: int = 0) -> Variant:
    """A variant from a mapping or a short string `extractor[:prompt_version][@model]`
    (`ocr`, `gemini:v2`, `gemini:v1@gemini-2.5-flash`)."""
    if isinstance(spec, Variant):
        return spec
    where = f"variants[{position}]"
    if isinstance(spec, str):
        m = _SPEC.match(spec.strip())
        if not m:
            raise BadRequest(
                f"{where}: cannot read {spec!r}; write extractor[:prompt_version][@model], "
                "e.g. 'ocr', 'gemini:v2' or 'gemini:v1@gemini-2.5-flash'"
            )
        spec = {k: v for k, v in m.groupdict().items() if v}
        if "prompt" in spec:
            spec["prompt_version"] = spec.pop("prompt")
    if not isinstance(spec, Mapping):
        raise BadRequest(
            f"{where} must be an object like {{'extractor': 'gemini', 'prompt_version': 'v2'}} "
            f"or a string like 'gemini:v2', not {type(spec).__name__}"
        )
    try:
        return Variant.model_validate(dict(spec))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "variant"
        known = ", ".join(Variant.model_fields)
        if err["type"] == "extra_forbidden":
            raise BadRequest(
                f"{where}.{field}: unknown key; a variant has {known} (extractor options go "
                "under `options`)"
            ) from None
        if field == "mode":
            raise BadRequest(
                f"{where}.mode: unknown mode {err.get('input')!r}; use one of "
                f"{', '.join(repr(m) for m in MODES)} (batch: through Google's Batch API)"
            ) from None
        raise BadRequest(f"{where}.{field}: {err['msg']} (got {err.get('input')!r})") from None


def read_variants(source: str | Path | Sequence[Any] | None) -> list[Variant]:
    """Variants from a list (of mappings or short strings), a YAML/JSON file, or None (the
    defaults). A file holds a list, or an object with a `variants` list."""
    if source is None:
        source = DEFAULT_VARIANTS
    if isinstance(source, str | Path) and not _looks_like_spec(source):
        source = _read_file(Path(source))
    elif isinstance(source, str):
        source = [source]
    if isinstance(source, Mapping):
        source = source.get("variants")  # type: ignore[assignment]
    if not isinstance(source, Sequence) or isinstance(source, str) or not source:
        raise BadRequest(
            "variants must be a non-empty list, e.g. [{'extractor': 'gemini', "
            "'prompt_version': 'v1'}, {'extractor': 'ocr'}]"
        )
    return [parse_variant(v, i) for i, v in enumerate(source)]


def _looks_like_spec(source: str | Path) -> bool:
    text = str(source)
    return (
        isinstance(source, str)
        and not text.endswith((".json", ".yaml", ".yml"))
        and "/" not in text
    )


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadRequest(f"variants file {path} does not exist") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pyyaml is a dev dependency; JSON always works
            raise BadRequest(
                f"variants file {path} is YAML but PyYAML is not installed: "
                "`pip install pyyaml`, or write the variants as JSON"
            ) from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BadRequest(f"variants file {path} is not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"variants file {path} is not valid JSON: {exc}") from None


def _check_value(cls: type[Extractor], key: str, value: Any) -> Any:
    info = cls.Options.model_fields[key]
    target: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    adapter: TypeAdapter[Any] = TypeAdapter(target)
    return adapter.validate_python(value)


def validate_variants(variants: Iterable[Variant], settings: Settings) -> list[Variant]:
    """Raises BadRequest for the first problem, naming the variant; returns the variants."""
    out = list(variants)
    seen: dict[str, int] = {}
    for i, v in enumerate(out):
        where = f"variants[{i}] ({v.label})"
        if v.name is not None and not _NAME.match(v.name):
            raise BadRequest(f"{where}.name: use letters, digits and ._/@=+- only")
        if v.label in seen:
            raise BadRequest(
                f"{where}: same name as variants[{seen[v.label]}]; give one a distinct `name`"
            )
        seen[v.label] = i
        try:
            cls = get_extractor_class(v.extractor)
        except ConfigError:
            raise BadRequest(
                f"{where}.extractor: unknown extractor '{v.extractor}'; known: "
                f"{', '.join(extractor_names())} (plugins register more)"
            ) from None
        if v.batch and not cls.can_batch:
            raise BadRequest(
                f"{where}.mode: the {v.extractor} extractor cannot batch (no batch API); "
                f'remove "mode": "batch" to run it interactively, or choose an extractor '
                f"that can ({', '.join(_batch_extractors()) or 'none installed'})"
            )
        known = sorted(k for k in cls.Options.model_fields if k not in FORBIDDEN_OPTIONS)
        for key in v.options:
            if key in SHORTHANDS and getattr(v, key) is not None:
                raise BadRequest(f"{where}: `{key}` is given twice, at the top and in options")
        for key, value in v.overrides().items():
            if key in FORBIDDEN_OPTIONS:
                raise BadRequest(
                    f"{where}.options.{key}: secrets are never variant options (runs are written "
                    "to disk); export GEMINI_API_KEY instead"
                )
            if key not in cls.Options.model_fields:
                place = key if key in SHORTHANDS else f"options.{key}"
                raise BadRequest(
                    f"{where}.{place}: the {v.extractor} extractor has no option '{key}'; "
                    f"its options are {', '.join(known) or 'none'}"
                )
            try:
                _check_value(cls, key, value)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise BadRequest(f"{where}.{key}: {err['msg']} (got {value!r})") from None
        if "prompt_version" in v.overrides():
            folder = Path(v.options.get("prompts_dir", settings.prompts_dir))
            try:
                load_prompt(folder, v.prompt_version or v.options["prompt_version"])
            except ConfigError:
                raise BadRequest(
                    f"{where}.prompt_version: unknown prompt version "
                    f"'{v.overrides()['prompt_version']}'; known in {folder}: "
                    f"{', '.join(prompt_versions(folder)) or 'none'} (add a file <version>.md)"
                ) from None
    return out


def _batch_extractors() -> list[str]:
    out = []
    for name in extractor_names():
        try:
            if get_extractor_class(name).can_batch:
                out.append(name)
        except Exception:  # a broken plugin is named elsewhere; here it only cannot batch
            continue
    return out


# --- building ---------------------------------------------------------------------------------


def build_extractor(
    variant: Variant, settings: Settings, catalog: Matcher | None = None
) -> Extractor:
    """The extractor for `variant`: `create_extractor` with the variant's options as
    overrides, so it is built exactly as a job's would be, with them. Raises ConfigError when
    the variant cannot run here (e.g. GEMINI_API_KEY missing). An extractor that reads a
    catalog reads the experiment's (None: none), never the server's snapshot."""
    return create_extractor(variant.extractor, settings, catalog=catalog, **variant.overrides())


def request_identity(extractor: Extractor) -> dict[str, Any]:
    """What makes two requests the same, besides the photos and context: the extractor, its
    answer-changing options and the hash of its prompt's text."""
    options = extractor.options.model_dump(mode="json", exclude=set(NOT_IN_CACHE_KEY))
    prompt = getattr(extractor, "system_prompt", None)
    return {
        "extractor": extractor.name,
        "options": options,
        "promptSha256": prompt_sha256(prompt) if prompt else None,
    }


def prompt_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def effective_options(extractor: Extractor) -> dict[str, Any]:
    """The extractor's options as recorded in a run (secrets left out)."""
    return extractor.options.model_dump(mode="json", exclude=set(FORBIDDEN_OPTIONS))
