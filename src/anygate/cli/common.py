"""What every command shares: the config option, settings or a clean exit, the consoles, the store, a
failure as one line and a non-zero status, progress on the terminal, and a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from anygate.errors import ConfigError, GatewayError
from anygate.settings import Settings, load_settings
from anygate.store.crypto import SecretKeyError
from anygate.store.database import StoreUnavailable
from anygate.store.providers import DuplicateProvider
from anygate.store.store import Store, open_store

T = TypeVar("T")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (or ANYGATE_CONFIG).")]
DEFAULT_TIMEOUT = 20.0
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="Give up after this many seconds (the network's part of the work)."),
]


def err_console() -> Console:
    # Messages are never wrapped by rich: a piped terminal is 80 columns wide, and a hint with a command
    # in it must stay one line that can be copied.
    return Console(stderr=True, soft_wrap=True)


def settings_or_exit(**flags: Any) -> Settings:
    try:
        return load_settings(flags)
    except ConfigError as exc:
        # The message quotes the operator's file: text, never rich markup.
        err_console().print(Text(f"anygate: {exc}", style="red"), highlight=False)
        raise typer.Exit(2) from None


def run_async(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def load(config: Path | None = None) -> Settings:
    """The settings, with the config file a command was given."""
    return settings_or_exit(config_file=config)


def err_console_print(message: str) -> None:
    err_console().print(f"anygate: {message}", highlight=False, markup=False, soft_wrap=True)


def fail(message: str, status: int = 1) -> NoReturn:
    """Stop the command: one line on stderr, ``anygate: <message>``, and a non-zero exit status."""
    err_console_print(message)
    raise typer.Exit(status)


@contextmanager
def progress(description: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr saying what is being waited for, with the time spent; gone when the work is done,
    and nothing at all when stderr is not a terminal. Yields a function that changes the description."""
    console = err_console()
    if not console.is_terminal:  # rich would still write a line break when it stops
        yield lambda text: None
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda text: bar.update(task, description=text)


async def within(seconds: float, work: Awaitable[T], what: str) -> T:
    """``work``, or a failure naming ``what`` did not finish in ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError:
        fail(f"{what}: no answer within {seconds:g} s (--timeout)")


def with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store, run ``work``, close it; a store or key problem exits with its message."""

    async def run() -> T:
        store = await open_store(settings)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        result: T = run_async(run())
    except (StoreUnavailable, SecretKeyError, GatewayError, DuplicateProvider, LookupError) as exc:
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        if isinstance(exc, DuplicateProvider):
            message = f"provider '{exc}' already exists"
        err_console().print(f"anygate: {message}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    return result
