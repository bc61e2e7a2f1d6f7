"""The harness's own HTTP client: one request at a time, loopback only, never through a proxy."""

from __future__ import annotations

import urllib.error
import urllib.request


def post(url: str, body: str, key: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """POST `body` on loopback, no proxies; returns the status and the whole response body."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the benchmark only talks to loopback, not {url}")
    request = urllib.request.Request(  # noqa: S310 - checked above: http on loopback
        url,
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
