"""``ClientGone``: the server's word that a request's client has left, for the app to act on at once.

anygate's own server protocol (``protocol.py``) puts one in each request's ASGI scope, under
``extensions["anygate.client_gone"]["signal"]`` (an extension's data is a dict, as ASGI has it), and fires
it when the connection is lost (or refused) before the response is complete. The app's disconnect watch
(``api/disconnect.py``) listens to it: the request's work is cancelled the moment the client goes, with
no task waiting on ``receive`` for it. Under another ASGI server the scope has none, and the watch falls
back to such a task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

CLIENT_GONE = "anygate.client_gone"  # its key in the scope's ``extensions``


class ClientGone:
    """Fired at most once; ``listen`` sets the one callback told (at once, if it has already fired)."""

    __slots__ = ("_listener", "gone")

    def __init__(self) -> None:
        self._listener: Callable[[], None] | None = None
        self.gone = False

    def listen(self, listener: Callable[[], None] | None) -> None:
        self._listener = listener
        if listener is not None and self.gone:
            listener()

    def fire(self) -> None:
        if self.gone:
            return
        self.gone = True
        if self._listener is not None:
            self._listener()


def client_gone(scope: Mapping[str, Any]) -> ClientGone | None:
    """The scope's ``ClientGone``, when its server gives one."""
    extensions = scope.get("extensions")
    extension = extensions.get(CLIENT_GONE) if isinstance(extensions, dict) else None
    signal = extension.get("signal") if isinstance(extension, dict) else None
    return signal if isinstance(signal, ClientGone) else None
