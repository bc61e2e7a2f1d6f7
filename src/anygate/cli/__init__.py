"""``anygate ...``: the command line. Each command group lives in a module of its own; what they share
(the config option, settings or a clean exit, the store) in ``common``."""

from __future__ import annotations

import inspect
import logging
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from anygate.cli.database import db_app, secrets_app
from anygate.cli.imports import import_app
from anygate.cli.keys import keys_app, users_app
from anygate.cli.providers import models, providers_app
from anygate.cli.quota import quota_app
from anygate.cli.reissue import teams_reissue, users_reissue
from anygate.cli.requests import requests
from anygate.cli.roster import audit, users_import
from anygate.cli.serve import serve
from anygate.cli.teams import teams_app
from anygate.cli.usage import usage

app = typer.Typer(
    help="anygate: any OpenAI-compatible LLM endpoint behind one OpenAI-compatible API.", no_args_is_help=True
)


def show_version(given: bool) -> None:
    if given:
        from anygate import __version__

        typer.echo(f"anygate {__version__}")
        raise typer.Exit


@app.callback()
def version_option(
    version: Annotated[
        bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """anygate: any OpenAI-compatible LLM endpoint behind one OpenAI-compatible API."""


app.command()(serve)
app.command()(models)
app.add_typer(providers_app, name="providers")
app.add_typer(quota_app, name="quota")
app.command("usage")(usage)
app.command("requests")(requests)
app.add_typer(db_app, name="db")
app.add_typer(secrets_app, name="secrets")
app.add_typer(keys_app, name="keys")
users_app.command("import")(users_import)
users_app.command("reissue")(users_reissue)
teams_app.command("reissue")(teams_reissue)
app.add_typer(users_app, name="users")
app.add_typer(teams_app, name="teams")
app.command("audit")(audit)
app.add_typer(import_app, name="import")


# What to type for a value of each Python type, as click spells it.
PLACEHOLDERS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "datetime": "DATETIME", "Path": "PATH"}


def main() -> None:
    """The ``anygate`` program: the app above, its help in plain words (``plain_help``). A command says what
    went wrong in its own words: the log lines the services write for a running gateway are dropped (``serve``
    sets up its own logging)."""
    logging.getLogger().addHandler(logging.NullHandler())
    command = plain_help(typer.main.get_command(app))
    command(prog_name="anygate")


def no_type(ctx: Any) -> None:
    return None


def reflowed(text: str) -> str:
    """A docstring's paragraphs each on one line (the terminal wraps them), blank lines kept between."""
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(text).split("\n\n"))


def plain_help(command: Any) -> Any:
    """Help that shows what to type, not Python's types: ``--alias TEXT``, ``--port INTEGER``, nothing after
    a flag (``--help`` included), an argument by its name (``PROVIDER_ID``); never ``<bool>`` or
    ``<list[str]>``; a docstring's paragraphs as flowing text, not broken where the source wraps. Typer's
    own click objects, walked once before the program runs."""
    if command.help:
        command.help = reflowed(command.help)
    help_option = command.get_help_option(SimpleNamespace(help_option_names=["--help"]))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if param.metavar is not None:
            continue
        if param.param_type_name == "argument":
            param.metavar = (param.name or "value").upper()
            param.display_type_rich = no_type  # the argument's name says what it is
        elif param.is_flag or param.count:
            param.metavar = ""
        else:
            named = param.bare_type().removeprefix("list[").removesuffix("]")  # a repeatable option: its item
            param.metavar = PLACEHOLDERS.get(named, named.upper())
    for subcommand in getattr(command, "commands", {}).values():
        plain_help(subcommand)
    return command
