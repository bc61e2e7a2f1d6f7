"""``anygate ...``: the command line. Each command group lives in a module of its own; what they share
(the config option, settings or a clean exit, the store) in ``common``."""

from __future__ import annotations

import typer

from anygate.cli.database import db_app, secrets_app
from anygate.cli.keys import keys_app, users_app
from anygate.cli.providers import models, providers_app
from anygate.cli.quota import quota_app
from anygate.cli.serve import serve
from anygate.cli.usage import usage

app = typer.Typer(
    help="anygate: any OpenAI-compatible LLM endpoint behind one OpenAI-compatible API.", no_args_is_help=True
)
app.command()(serve)
app.command()(models)
app.add_typer(providers_app, name="providers")
app.add_typer(quota_app, name="quota")
app.command("usage")(usage)
app.add_typer(db_app, name="db")
app.add_typer(secrets_app, name="secrets")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")


def main() -> None:
    app()
