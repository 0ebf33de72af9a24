"""The README's generated parts (run by cog: `cog -r README.md`; `make lint` runs
`cog --check`): the settings table from the settings object and the command reference from
the click commands, so neither can drift from the code."""

from __future__ import annotations

from pathlib import Path

import click

from scanbatch.settings import REPO_ROOT, Settings


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        return (field.json_schema_extra or {}).get("shown_default", "(computed)")
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


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `SCANBATCH_{name.upper()}` | {_default(name)} | {meaning} |")
    return "\n".join(rows) + "\n"


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
