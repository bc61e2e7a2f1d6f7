"""The gateway's own process: ``anygate serve`` checks the configuration, binds the port and prints its
banner, then replaces itself (``exec``, the same process id) with ``python -m anygate.server_process``,
which serves on the socket it was handed.

Why: the command line's libraries (typer, click's help, rich and its tracebacks: ~4 MiB) would otherwise
stay in the gateway's memory for as long as it runs, and a fresh interpreter holds none of the command's
own garbage. The same process id, signals and exit status as before: a supervisor, a container's PID 1
or a terminal sees one process throughout.

The settings are loaded again from the same flags, environment and files, so nothing secret travels on
the command line: the flags (config file, host, port, workers, log level and format, drain grace,
--no-auth) are in ``argv``, the listening socket is an inherited file descriptor.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from anygate.errors import ConfigError
from anygate.server import run_server
from anygate.settings import load_settings

LISTENER_FD_FLAG = "--listener-fd"
FLAGS_FLAG = "--flags"


def exec_server(flags: Mapping[str, Any], listener: socket.socket) -> NoReturn:
    """Replace this process with one that serves on ``listener`` with the settings ``flags`` load."""
    listener.set_inheritable(True)
    sys.stdout.flush()  # what the banner wrote is in this process's buffers, which exec discards
    sys.stderr.flush()
    given = {name: str(value) if isinstance(value, Path) else value for name, value in flags.items()}
    argv = [sys.executable, "-m", __name__, LISTENER_FD_FLAG, str(listener.fileno()), FLAGS_FLAG, json.dumps(given)]
    os.execv(sys.executable, argv)


def parse_argv(argv: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """The listener's descriptor and the flags, from what ``exec_server`` wrote."""
    if len(argv) != 4 or argv[0] != LISTENER_FD_FLAG or argv[2] != FLAGS_FLAG:
        raise SystemExit(
            f"usage: python -m {__name__} {LISTENER_FD_FLAG} FD {FLAGS_FLAG} JSON (run by `anygate serve`)"
        )
    flags = json.loads(argv[3])
    if not isinstance(flags, dict):
        raise SystemExit(f"{FLAGS_FLAG} takes a JSON object")
    return int(argv[1]), flags


def main(argv: Sequence[str]) -> int:
    fd, flags = parse_argv(argv)
    listener = socket.socket(fileno=fd)
    try:
        # Loaded a moment ago by the command that exec'd this process; only a file changed since fails here.
        settings = load_settings(flags)
    except ConfigError as exc:
        sys.stderr.write(f"anygate: {exc}\n")
        return 2
    run_server(settings, listener=listener)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
