"""The README's generated parts (run by cog: `cog -r README.md`; `make lint` runs
`cog --check`): the settings table from the settings object and the command reference from
the click commands, so neither can drift from the code."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click
from pydantic.fields import FieldInfo

from scanbatch.extractors import extractor_names, get_extractor_class
from scanbatch.extractors.base import env_options, env_prefix
from scanbatch.settings import ENV_PREFIX, REPO_ROOT, Settings


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return (field.json_schema_extra or {}).get("shown_default", "(computed)")  # type: ignore[union-attr]
    value = field.default
    if value is None:
        return "(unset)"
    if value == "":
        return "(empty)"
    if isinstance(value, Path):
        value = value.relative_to(REPO_ROOT) if value.is_relative_to(REPO_ROOT) else value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _rows(fields: Iterable[tuple[str, FieldInfo]]) -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for variable, field in fields:
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{variable}` | {_default(field)} | {meaning} |")
    return "\n".join(rows) + "\n"


def settings_table() -> str:
    """The core settings, then each extractor's own options (its `Options` model), which
    only that extractor reads."""
    out = [_rows((f"{ENV_PREFIX}{n.upper()}", f) for n, f in Settings.model_fields.items())]
    for name in extractor_names(shipped_only=True):  # a plugin documents its own
        cls = get_extractor_class(name)
        fields = cls.Options.model_fields
        out.append(f"\nThe `{name}` extractor's options:\n\n")
        out.append(_rows((env_prefix(name) + o.upper(), fields[o]) for o in env_options(cls)))
    return "".join(out)


def _walk(cmd: click.Command, path: list[str]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from _walk(cmd.commands[name], [*path, name])


def command_reference() -> str:
    """Every command's `--help`, exactly as the terminal shows it."""
    from click.testing import CliRunner

    from scanbatch.cli import cli

    out = []
    for path, _cmd in _walk(cli, ["scanbatch"]):
        result = CliRunner().invoke(cli, [*path[1:], "--help"], prog_name="scanbatch")
        out.append(f"#### `{' '.join(path)}`\n\n```\n{result.output.rstrip()}\n```\n")
    return "\n".join(out)
