"""Versioned prompt files: `<prompts_dir>/<version>.md`. The version is the file's name, and
every result records the version it ran with, so a prompt file is never edited in place once
results cite it: a change is a new file (v2.md, ...)."""

from __future__ import annotations

import re
from pathlib import Path

from scanbatch.errors import ConfigError

PROMPT_SUFFIX = ".md"
# A version names a file in one folder; no separators, so it can never reach outside it.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def prompt_versions(prompts_dir: Path) -> list[str]:
    """The versions available in `prompts_dir`, sorted."""
    folder = Path(prompts_dir)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob(f"*{PROMPT_SUFFIX}") if p.is_file())


def load_prompt(prompts_dir: Path, version: str) -> str:
    """The text of prompt `version`. Raises ConfigError naming the known versions when the
    version does not exist, so a typo in SCANBATCH_PROMPT_VERSION fails before any work."""
    folder = Path(prompts_dir)
    path = folder / f"{version}{PROMPT_SUFFIX}"
    if not _VERSION.match(version or "") or not path.is_file():
        known = ", ".join(prompt_versions(folder)) or "none"
        raise ConfigError(
            f"Unknown prompt version '{version}' in {folder}: set SCANBATCH_PROMPT_VERSION to "
            f"one of {known} (a version is a file name without {PROMPT_SUFFIX})"
        )
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise ConfigError(f"Prompt file {path} is empty: write the prompt or pick another version")
    return text
