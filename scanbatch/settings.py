"""The one settings object. Every field reads ``SCANBATCH_<NAME>`` from the environment; the
README's configuration table is generated from the same fields (`scanbatch.cli.docs`, by cog)."""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# Files that ship with the repository (prompts, sample photos, sample catalog, notebooks).
REPO_ROOT = Path(__file__).resolve().parents[1]
# The notebook every job executes (server, `scanbatch run`); its executed copy is the audit trail.
PROCESSING_NOTEBOOK = REPO_ROOT / "notebooks" / "process_batch.ipynb"
SHIPPED_DATA = REPO_ROOT / "data"


# Settings the processing kernel never needs: the server's own, and the limits on what
# experiments unpack (read in the notebook's process, not a job's kernel). Every other field
# is a parameter of the processing notebook, except the EXTRACTOR_ONLY ones.
SERVER_ONLY = frozenset(
    {
        "host",
        "port",
        "runner_workers",
        "notebook_timeout",
        "seed_catalog",
        "scan_timeout",
        "http_connection_limit",
        "http_channel_timeout",
        "dataset_max_bytes",
        "dataset_max_files",
        "http_send_timeout",
        "http_send_buffer",
        "page_origins",
        "upload_ticket_seconds",
        "review_lease_seconds",
        "backlog_wait_seconds",
        "backlog_max_items",
        "backlog_retries",
        "backlog_poll_seconds",
        "backlog_file_bytes",
        "webhook_hosts",
        "webhook_timeout",
        "webhook_retry_seconds",
        "webhook_retry_scale",
        "log_max_bytes",
        "log_backups",
        "keep_photos_days",
    }
)


# Settings that only give an extractor's options their values (`Extractor.option_settings`):
# they reach the kernel inside its `extractor_options` parameter, so that a job's notebook shows
# them only when its extractor takes them.
EXTRACTOR_ONLY = frozenset({"prompts_dir", "prompt_version"})


def kernel_fields() -> list[str]:
    """Names of the settings the processing kernel receives, in declaration order."""
    return [name for name in Settings.model_fields if name not in SERVER_ONLY | EXTRACTOR_ONLY]


# Set while the settings are built from a kernel's parameters, which are their only source.
_PARAMETERS_ONLY: ContextVar[bool] = ContextVar("parameters_only", default=False)


def _default_extractor() -> str:
    return "gemini" if os.environ.get("GEMINI_API_KEY") else "ocr"


ENV_PREFIX = "SCANBATCH_"
MAX_KEEP_DAYS = 36_500  # a hundred years: any longer is a typo, not a retention policy
# A secret, read from the environment by its one user (scanbatch.webhooks) like GEMINI_API_KEY:
# never a field, so never in a settings table, a notebook parameter or an extractor's options.
WEBHOOK_SECRET_ENV = "SCANBATCH_WEBHOOK_SECRET"


def host_netloc(hostname: str, port: int | None) -> str:
    """`host` or `host:port` as SCANBATCH_WEBHOOK_HOSTS lists it (an IPv6 address bracketed)."""
    host = f"[{hostname}]" if ":" in hostname else hostname
    return host if port is None else f"{host}:{port}"


def host_entry(entry: str) -> str:
    """One SCANBATCH_WEBHOOK_HOSTS entry, normalised (lower case), or ValueError saying why."""
    entry = entry.strip()
    parts = urlsplit("//" + entry)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        not parts.hostname
        or port == -1
        or parts.username is not None
        or parts.path
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in entry)
    ):
        raise ValueError(
            f"{entry!r} is not a host: write host or host:port, e.g. hooks.example.org or "
            "127.0.0.1:8123, without a scheme or a path"
        )
    return host_netloc(parts.hostname, port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    data_dir: Path = Field(
        Path("data"),
        description="Where the store, job folders and catalog snapshot live; a relative path "
        "is taken from the repository root.",
    )
    extractor: str = Field(
        default_factory=_default_extractor,
        description="Extractor backend, the reader of the photos: `gemini`, `ocr` or a plugin's.",
        json_schema_extra={"shown_default": "`gemini` if `GEMINI_API_KEY` is set, else `ocr`"},
    )
    item_concurrency: int = Field(
        10,
        ge=1,
        le=32,
        description="Items of one job extracted at once (a batch holds at most 10); all of them "
        "share the one Gemini rate limit.",
    )
    runner_workers: int = Field(2, ge=1, le=16, description="Notebook executions run at once.")
    notebook_timeout: float = Field(
        900.0, gt=0, description="Wall-clock limit in seconds for one job's notebook execution."
    )
    seed_catalog: Path | None = Field(
        SHIPPED_DATA / "catalog_sample.csv",
        description="CSV imported when the catalog is empty at server start; empty to skip.",
    )
    scan_timeout: float = Field(
        60.0,
        gt=0,
        le=600,
        description="Seconds `POST /library/scan` waits for its one record; past it, a 504.",
    )
    http_connection_limit: int = Field(
        1000,
        ge=10,
        le=10000,
        description="Open client connections the server accepts at once (idle ones included).",
    )
    http_channel_timeout: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Seconds a connection may send nothing (e.g. a stalled partial request) "
        "before the server closes it.",
    )
    http_send_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Seconds a client may accept none of a response waiting for it (a stalled "
        "reader) before the server resets its connection and frees the thread serving it.",
    )
    http_send_buffer: int = Field(
        16 * 1024 * 1024,
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        description="Bytes of a response buffered for a slow client before the thread making "
        "it waits for the client to read.",
    )
    page_origins: str = Field(
        "",
        description="Comma-separated origins of workbench pages (`http://127.0.0.1:8866`) whose "
        "browser may send batches straight to this server with an upload ticket (CORS); "
        "`make run` sets its page's.",
        json_schema_extra={"shown_default": "none (`make run`: its page's)"},
    )
    upload_ticket_seconds: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="Seconds an upload ticket (one batch sent from the workbench page's "
        "browser) stays valid.",
    )
    review_lease_seconds: float = Field(
        600.0,
        gt=0,
        le=86400,
        description="Seconds a record handed to a reviewer (`POST /library/scan/review/next`) "
        "stays theirs unless they save or release it.",
    )
    backlog_wait_seconds: float = Field(
        60.0,
        ge=0,
        le=86400,
        description="Seconds the oldest waiting backlog record waits for others before they "
        "are sent in one Google batch.",
    )
    backlog_max_items: int = Field(
        10000,
        ge=1,
        le=500000,
        description="Waiting backlog records that are sent at once, without waiting "
        "SCANBATCH_BACKLOG_WAIT_SECONDS.",
    )
    backlog_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Times a backlog record is sent again after its Google batch failed, "
        "expired or was cancelled at Google (or its line failed retryably).",
    )
    backlog_poll_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds before a Google batch is first asked how it stands; doubles "
        "per unchanged answer, up to 10 minutes.",
    )
    backlog_file_bytes: int = Field(
        1_900_000_000,
        ge=1_000_000,
        le=2_000_000_000,
        description="Largest input file of one Google batch (Google's limit: 2 GB); more "
        "records go in several batches.",
    )
    webhook_hosts: str = Field(
        "",
        description="Comma-separated hosts (`host` or `host:port`) a job's `callbackUrl` may "
        "name; no other address is ever called. `host` alone allows only the scheme's default "
        "port. Empty: no callbacks.",
    )
    webhook_timeout: float = Field(
        15.0,
        gt=0,
        le=300,
        description="Seconds one completion webhook attempt may take (connect and answer) "
        "before it counts as failed and is retried.",
    )
    webhook_retry_seconds: float = Field(
        86400.0,
        gt=0,
        le=7 * 86400,
        description="Seconds after a job ends during which its completion webhook is retried; "
        "past it, the delivery is marked failed.",
    )
    webhook_retry_scale: float = Field(
        1.0,
        gt=0,
        le=10,
        description="Factor on the retry schedule of completion webhooks (Standard Webhooks': "
        "at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); tests shorten it.",
    )
    host: str = Field("127.0.0.1", description="Address `scanbatch serve` binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port `scanbatch serve` binds.")
    prompts_dir: Path = Field(
        SHIPPED_DATA / "prompts", description="Folder of versioned prompt files."
    )
    prompt_version: str = Field(
        "v1", description="Prompt file under data/prompts/ (name without .md)."
    )
    match_min_score: float = Field(
        # Tuned on the quality set (docs/catalog.md); the matcher's own default is this one.
        0.82,
        ge=0,
        le=1,
        description="Minimum catalog match score; below it, no match.",
    )
    dataset_max_bytes: int = Field(
        8 * 1024**3,
        ge=1,
        description="Bytes an experiment may unpack from one dataset zip (all members, "
        "uncompressed); a zip over it is refused before anything is written.",
    )
    dataset_max_files: int = Field(
        100_000, ge=1, description="Members an experiment may unpack from one dataset zip."
    )
    log_max_bytes: int = Field(
        10 * 1024**2,
        ge=4096,
        description="Size at which a log in the data folder (`server.log`, `warm_kernels.log`) "
        "is moved aside to `<name>.1`.",
    )
    log_backups: int = Field(
        5, ge=1, le=100, description="Moved-aside logs kept per log file; the oldest goes."
    )
    keep_photos_days: int | None = Field(
        None,
        ge=1,
        le=MAX_KEEP_DAYS,
        description="Days the photos of finished records nobody reviewed are kept (counted "
        "from their job's end); the server removes older ones at start and every 6 hours, as "
        "`scanbatch prune` does. Reviewed records keep theirs; results stay. Unset: kept forever.",
        json_schema_extra={"shown_default": "unset (kept forever)"},
    )

    # The SCANBATCH_* variables these settings were read with (none when they come from kernel
    # parameters): each extractor reads its own options from them (`scanbatch.extractors`).
    _environ: dict[str, str] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        if not _PARAMETERS_ONLY.get():
            self._environ = {
                name.upper(): value
                for name, value in os.environ.items()
                if name.upper().startswith(ENV_PREFIX) and name.upper() != WEBHOOK_SECRET_ENV
            }

    def environment(self, prefix: str) -> dict[str, str]:
        """The variables read with these settings whose names start with `prefix` (e.g.
        `SCANBATCH_GEMINI_`), keyed by the rest of the name in lower case (`rpm`)."""
        prefix = prefix.upper()
        return {
            name[len(prefix) :].lower(): value
            for name, value in self._environ.items()
            if name.startswith(prefix)
        }

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _PARAMETERS_ONLY.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)

    @field_validator("seed_catalog", "keep_photos_days", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("data_dir", "prompts_dir", "seed_catalog")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """Resolved once, here, so that every module (Flask's `send_file`, the kernel in its job
        folder, a notebook's kernel in `notebooks/`) sees the same folder: a relative path is
        the repository's, as `make run` (run from the repository root) means it."""
        if value is None:
            return None
        return (value if value.is_absolute() else REPO_ROOT / value).resolve()

    @field_validator("page_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        origins = [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        for origin in origins:
            if not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host:port, e.g. "
                    "http://127.0.0.1:8866, without a path"
                )
        return ",".join(origins)

    @cached_property
    def allowed_page_origins(self) -> frozenset[str]:
        return frozenset(o for o in self.page_origins.split(",") if o)

    @field_validator("webhook_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        return ",".join(host_entry(h) for h in value.split(",") if h.strip())

    @cached_property
    def allowed_webhook_hosts(self) -> frozenset[str]:
        """`host:port` or `host` (the scheme's default port), lower case; IPv6 in brackets."""
        return frozenset(h for h in self.webhook_hosts.split(",") if h)

    @field_validator("extractor")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    def kernel_parameters(self) -> dict[str, Any]:
        """The one channel from these settings to the processing kernel: papermill parameters
        (`notebooks/process_batch.ipynb` declares one per name). Paths are absolute (see
        `_absolute`): the kernel runs in the job folder. Secrets are never here: the kernel reads
        GEMINI_API_KEY and GOOGLE_GEMINI_BASE_URL from its environment, so they never reach a
        notebook."""
        params: dict[str, Any] = {}
        for name in kernel_fields():
            value = getattr(self, name)
            if isinstance(value, Path):
                value = str(value)
            params[name] = "" if value is None else value  # "" reads back as None
        return params

    @classmethod
    def from_kernel_parameters(cls, params: dict[str, Any]) -> Settings:
        """The settings a kernel was given, validated, ignoring any SCANBATCH_* variable: the
        parameters are the kernel's only source (reading the environment also took most of
        the ~2 ms this takes, twice per job)."""
        from pydantic import ValidationError

        from scanbatch.errors import ConfigError

        values = {name: params[name] for name in kernel_fields() if name in params}
        token = _PARAMETERS_ONLY.set(True)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "parameters"
            raise ConfigError(
                f"notebook parameter {name}: {err['msg']} (got {err.get('input')!r})"
            ) from None
        finally:
            _PARAMETERS_ONLY.reset(token)

    @cached_property
    def store_path(self) -> Path:
        return self.data_dir / "scanbatch.duckdb"

    @cached_property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @cached_property
    def catalog_snapshot(self) -> Path:
        return self.data_dir / "catalog.parquet"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with a clear error naming the variable on a bad value."""
    from pydantic import ValidationError

    from scanbatch.errors import ConfigError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "SCANBATCH_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message} (got {err.get('input')!r})") from None
