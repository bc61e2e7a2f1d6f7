"""The test tiers, and the guard that keeps the fast one honest.

A test is in the fast tier unless it is marked with one of ``TIER_MARKERS``:

- ``sockets``: real I/O beyond this process's memory: servers on loopback ports, subprocesses, signals;
- ``services``: the real PostgreSQL and Redis servers;
- ``browser``: headless Chromium.

In the fast tier the gateway runs in-process (``tests/support/inprocess.py``) with an in-memory upstream
(``tests/support/fake_transport.py``). A fast-tier test that opens an internet socket or starts a
subprocess fails at once, saying so, rather than quietly slowing the tier down: mark it, or drive it
in-process. ``scripts/test --fast`` runs the fast tier alone.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from typing import Any, NoReturn

import pytest

TIER_MARKERS = ("sockets", "services", "browser")
FAST_TIER = " and ".join(f"not {marker}" for marker in TIER_MARKERS)
NETWORK_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class RealIOInFastTier(AssertionError):
    """A fast-tier test reached for a socket or a subprocess."""


def in_fast_tier(item: pytest.Item) -> bool:
    return not any(item.get_closest_marker(marker) for marker in TIER_MARKERS)


def refuse(what: str) -> NoReturn:
    raise RealIOInFastTier(
        f"{what} in a fast-tier test: drive the gateway in-process (tests/support/inprocess.py), "
        f"or mark the test with one of {', '.join(TIER_MARKERS)} (tests/support/tiers.py)"
    )


def guarded(method: Callable[..., Any], action: str) -> Callable[..., Any]:
    """``method`` of ``socket.socket``, refusing on internet sockets (a Unix socket pair, which every
    event loop makes for itself, stays allowed)."""

    def guard(sock: socket.socket, address: Any, *args: Any) -> Any:
        if sock.family in NETWORK_FAMILIES:
            refuse(f"{action} {address!r}")
        return method(sock, address, *args)

    return guard


# The longest modules, longest first (``scripts/test --durations=0`` sums them; refresh the list when a
# module grows long or stops being so): begun first, they overlap each other, and no worker starts one of
# them while the others run out of work.
LONGEST_FIRST = (
    "tests/console/test_console_flows.py",
    "tests/console/test_console_real.py",
    "tests/compat/test_openapi_conformance.py",
    "tests/accounting/test_team_budgets.py",
    "tests/store/test_store_cli.py",
    "tests/test_drain.py",
    "tests/test_bootstrap.py",
    "tests/test_readme.py",
    "tests/console/test_console.py",
    "tests/store/test_store_keys_api.py",
    "tests/signin/test_signin_flow.py",
    "tests/cli/test_cli.py",
    "tests/test_resilience.py",
    "tests/store/test_store_key_families.py",
    "tests/store/test_store_provider_trust.py",
    "tests/accounting/test_limiters.py",
    "tests/accounting/test_gateway_processes.py",
    "tests/signin/test_signin_console.py",
    "tests/compat/test_litellm_shapes.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The order the modules run in: the longest first, then the others with a test of a marked tier,
    then those all in memory; each module's tests together and in their order.

    ``scripts/test`` hands each worker a module at a time (pytest-xdist's ``--dist loadscope``): the many
    short in-memory modules then fill the workers' last minutes, where otherwise one worker would finish a
    long module alone while the other waits."""
    marked = {module_of(item) for item in items if not in_fast_tier(item)}
    longest = {module: rank for rank, module in enumerate(LONGEST_FIRST)}

    def place(item: pytest.Item) -> tuple[int, int]:
        module = module_of(item)
        if module in longest:
            return (0, longest[module])
        return (1 if module in marked else 2, 0)

    items.sort(key=place)  # stable: within each place, the collection order stays


def module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


@pytest.fixture(autouse=True)
def fast_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if not in_fast_tier(request.node):
        return
    for name, action in (("connect", "connecting to"), ("connect_ex", "connecting to"), ("bind", "binding")):
        monkeypatch.setattr(socket.socket, name, guarded(getattr(socket.socket, name), action))

    def no_subprocess(*args: Any, **kwargs: Any) -> NoReturn:
        refuse(f"starting a subprocess ({args[1] if len(args) > 1 else kwargs.get('args')!r})")

    monkeypatch.setattr(subprocess.Popen, "__init__", no_subprocess)
