"""The `scanbatch` command, on click. Each subcommand lives in its own module under
`scanbatch.cli` and exposes `command` (a click command or group); adding one is one
`cli.add_command(...)` line below. Handlers load the settings themselves (`settings()`), so
`--help` works even when the environment is misconfigured."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from scanbatch.errors import ScanbatchError
from scanbatch.settings import Settings, load_settings

if TYPE_CHECKING:
    from scanbatch.client import Client


class CommandError(click.ClickException):
    """A ScanbatchError shown as one line, exit status 1 (usage errors stay 2)."""

    exit_code = 1

    def show(self, file=None) -> None:
        click.echo(f"scanbatch: error: {self.message}", err=True)


class ScanbatchGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ScanbatchError as exc:
            raise CommandError(exc.message) from None


def settings(**overrides: object) -> Settings:
    return load_settings(**overrides)


def server_client(url: str | None) -> Client:
    """The HTTP client of the running server, for commands that go through it: the token from
    $SCANBATCH_TOKEN, the URL from --url, else $SCANBATCH_URL, else the configured host and
    port."""
    from scanbatch.client import TOKEN_ENV, URL_ENV, Client

    if not os.environ.get(TOKEN_ENV):
        raise click.UsageError(f"set {TOKEN_ENV} to your API token")
    if url is None and not os.environ.get(URL_ENV):
        s = settings()
        url = f"http://{s.host}:{s.port}"
    return Client(url)


def finish(code: int) -> None:
    """End the command with `code` (0 returns normally)."""
    if code:
        click.get_current_context().exit(code)


@click.group(
    cls=ScanbatchGroup,
    # A fixed width: the README's command reference is generated from this help (cog).
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "terminal_width": 100,
    },
)
def cli() -> None:
    """Read photos of vinyl records and match them against the library catalog."""


def _register() -> None:
    from scanbatch.cli import (
        audit,
        backup,
        catalog,
        eval,
        experiment,
        export,
        keys,
        prune,
        run,
        serve,
        synth,
        usage,
    )

    cli.add_command(run.command)
    cli.add_command(keys.command)
    cli.add_command(serve.command)
    cli.add_command(catalog.command)
    cli.add_command(synth.command)
    cli.add_command(eval.command)
    cli.add_command(audit.command)
    cli.add_command(export.command)
    cli.add_command(experiment.experiment)
    cli.add_command(backup.backup_command)
    cli.add_command(backup.restore_command)
    cli.add_command(prune.command)
    cli.add_command(usage.command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script's entry point)."""
    try:
        cli.main(args=argv, prog_name="scanbatch", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("scanbatch: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
