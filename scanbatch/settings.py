"""The one settings object. Every field reads ``SCANBATCH_<NAME>`` from the environment; the
README's configuration table is generated from the same fields (``scanbatch settings``)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


# Files that ship with the repository (prompts, sample photos, sample catalog).
SHIPPED_DATA = Path(__file__).resolve().parents[1] / "data"


def _default_extractor() -> str:
    return "gemini" if os.environ.get("GEMINI_API_KEY") else "ocr"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCANBATCH_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        Path("data"), description="Where the store, job folders and catalog snapshot live."
    )
    extractor: str = Field(
        default_factory=_default_extractor,
        description="Extractor backend: `gemini` when GEMINI_API_KEY is set, else `ocr`.",
    )
    item_concurrency: int = Field(
        4, ge=1, le=32, description="Items of one job extracted at once."
    )
    runner_workers: int = Field(2, ge=1, le=16, description="Notebook executions run at once.")
    notebook_timeout: float = Field(
        900.0, gt=0, description="Wall-clock limit in seconds for one job's notebook execution."
    )
    host: str = Field("127.0.0.1", description="Address `scanbatch serve` binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port `scanbatch serve` binds.")
    gemini_model: str = Field("gemini-3-flash-preview", description="Gemini model name.")
    gemini_temperature: float = Field(0.1, ge=0, le=2, description="Sampling temperature.")
    gemini_timeout: float = Field(60.0, gt=0, description="Seconds per Gemini call.")
    gemini_max_retries: int = Field(
        4, ge=0, le=10, description="Retries of a 429/5xx/connection error."
    )
    gemini_rpm: int = Field(
        60, ge=1, description="Gemini requests per minute, shared by every item of the process."
    )
    prompts_dir: Path = Field(
        SHIPPED_DATA / "prompts", description="Folder of versioned prompt files."
    )
    prompt_version: str = Field(
        "v1", description="Prompt file under data/prompts/ (name without .md)."
    )
    match_min_score: float = Field(
        0.82, ge=0, le=1, description="Minimum catalog match score; below it, no match."
    )

    @field_validator("extractor")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

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
    return Settings(**overrides)
