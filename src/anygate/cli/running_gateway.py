"""What the running gateway serves, read from its own API (``GET /v1/providers``) at the address the settings
give (``ANYGATE_HOST``/``ANYGATE_PORT``, the config file), with the admin key they give.

``anygate models`` and ``anygate providers`` read it when the store holds providers: those live in the
gateway (added at runtime, their keys encrypted), and what the gateway discovered is what clients get.
Every way this can fail is one sentence saying why (``GatewayUnreadable``).
"""

from __future__ import annotations

from typing import Any

import orjson

from anygate.errors import GatewayError
from anygate.settings import Settings
from anygate.transport import OutgoingRequest, Timeouts

MAX_BODY_BYTES = 16 * 1024 * 1024


class GatewayUnreadable(Exception):
    """Why the running gateway's view could not be read (a sentence, never a key)."""


def gateway_url(settings: Settings) -> str:
    """Where a gateway started with these settings answers on this machine."""
    return local_url(settings.host, settings.port)


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine opens for a gateway listening there: a wildcard address is reached
    on loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


async def served_providers(settings: Settings, timeout: float) -> list[dict[str, Any]]:
    """``GET /v1/providers`` of the running gateway: each provider with its models, their source and any
    discovery error. Raise GatewayUnreadable."""
    from anygate.transport.network import NetworkTransport

    base = gateway_url(settings)
    headers = {"Accept": "application/json"}
    if settings.admin_key is not None:
        headers["Authorization"] = f"Bearer {settings.admin_key.get_secret_value()}"
    elif not settings.no_auth:
        raise GatewayUnreadable(
            "no admin key to ask it with: set ANYGATE_ADMIN_KEY (a generated admin key is kept only as a hash)"
        )
    wait = Timeouts(connect=timeout, first_byte=timeout, idle=timeout, total=timeout)
    request = OutgoingRequest("GET", f"{base}/v1/providers", headers, None, wait, True, f"the gateway at {base}")
    transport = NetworkTransport()
    try:
        body = await read_answer(transport, request, base)
    finally:
        await transport.aclose()
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise GatewayUnreadable(f"{base}/v1/providers did not answer with a provider list")
    return [entry for entry in data if isinstance(entry, dict)]


async def read_answer(transport: Any, request: OutgoingRequest, base: str) -> Any:
    try:
        response = await transport.send(request)
    except GatewayError as exc:
        raise GatewayUnreadable(f"no gateway answers at {base} ({exc.message})") from None
    try:
        if response.status == 401:
            raise GatewayUnreadable(f"the gateway at {base} refused the key: ANYGATE_ADMIN_KEY is not its admin key")
        if response.status != 200:
            raise GatewayUnreadable(f"the gateway at {base} answered HTTP {response.status}")
        raw = await response.read()
    except GatewayError as exc:
        raise GatewayUnreadable(f"the gateway at {base} stopped answering ({exc.message})") from None
    finally:
        await response.aclose()
    if len(raw) > MAX_BODY_BYTES:
        raise GatewayUnreadable(f"the gateway at {base} answered more than {MAX_BODY_BYTES} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayUnreadable(f"{base} did not answer JSON: is it an anygate?") from None


async def gateway_answers(settings: Settings, timeout: float) -> bool:
    """Whether something answers ``GET /health`` with 200 where a gateway started with these settings
    listens (no key needed): a command that sees no provider can then say the gateway's are not seen."""
    from anygate.transport.network import NetworkTransport

    base = gateway_url(settings)
    wait = Timeouts(connect=timeout, first_byte=timeout, idle=timeout, total=timeout)
    request = OutgoingRequest("GET", f"{base}/health", {}, None, wait, True, f"the gateway at {base}")
    transport = NetworkTransport()
    try:
        response = await transport.send(request)
        try:
            return response.status == 200
        finally:
            await response.aclose()
    except GatewayError:
        return False
    finally:
        await transport.aclose()
