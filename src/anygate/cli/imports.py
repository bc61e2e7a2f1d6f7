"""``anygate import litellm config.yaml``: a LiteLLM proxy configuration as anygate's (``litellm_config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from anygate.cli.common import err_console_print, fail
from anygate.errors import ConfigError

import_app = typer.Typer(help="Bring a configuration from another gateway.", no_args_is_help=True)


@import_app.command("litellm")
def import_litellm(
    source: Annotated[Path, typer.Argument(help="LiteLLM's proxy config.yaml.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write anygate's config here (default: print it).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output file if it exists.")] = False,
) -> None:
    """Its model list as providers, aliases, fallbacks and prices. What could not be carried over as it was is
    printed on stderr, one warning a line; API keys stay references to environment variables (${NAME})."""
    from anygate.litellm_config import convert

    try:
        parsed = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"{source}: cannot read it ({exc.strerror})")
    except yaml.YAMLError as exc:
        fail(f"{source}: not valid YAML: {exc}")
    try:
        conversion = convert(parsed)
    except ValueError as exc:
        fail(f"{source}: {exc}")
    for warning in conversion.warnings:
        err_console_print(f"warning: {warning}")
    text = f"# anygate configuration, converted from {source.name} by `anygate import litellm`.\n"
    text += yaml.safe_dump(conversion.config, sort_keys=False, allow_unicode=True)
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.exists() and not force:
        fail(f"{output} exists already: give another path, or --force to replace it")
    output.write_text(text, encoding="utf-8")
    check_loads(output)
    err_console_print(f"wrote {output}: try it with `anygate providers --config {output}`")


def check_loads(path: Path) -> None:
    """Refuse to leave a file anygate would not start with (the message names the field)."""
    from anygate.settings import load_settings

    try:
        load_settings({"config_file": path})
    except ConfigError as exc:
        fail(f"the converted configuration does not load: {exc}")
