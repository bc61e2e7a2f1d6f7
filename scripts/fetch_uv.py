"""Put uv's binary into a folder of the checkout, from its wheel on PyPI, with nothing but the standard library.

scripts/bootstrap uses it on a machine that has neither uv nor a Python with ``venv`` and ``pip`` (Debian
and Ubuntu ship those as separate packages, and their system Python refuses ``pip install --user``,
PEP 668). The wheel of the pinned version for this platform is downloaded, checked against the SHA-256
PyPI publishes for it, and its ``uv`` binary extracted; nothing is installed anywhere else.

    python3 scripts/fetch_uv.py VERSION DEST_DIR     # prints the path of the binary

The index is PyPI's simple API in its JSON form (PEP 691); UV_INDEX_URL names another index that serves it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import stat
import sys
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

INDEX = os.environ.get("UV_INDEX_URL", "https://pypi.org/simple").rstrip("/")
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def platform_tags() -> list[str]:
    """Wheel platform tag fragments that fit this machine, best first."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if sys.platform.startswith("linux") else "arm64"}.get(
        machine, machine
    )
    if sys.platform == "darwin":
        return [f"macosx_11_0_{machine}", f"macosx_10_12_{machine}", "universal2"]
    if sys.platform.startswith("linux"):
        libc = "musllinux" if platform.libc_ver()[0] != "glibc" else "manylinux"
        return [f"{libc}_2_17_{machine}", f"{libc}_2_28_{machine}", f"{libc}_1_1_{machine}", f"{libc}_2_31_{machine}"]
    raise SystemExit(f"fetch_uv: no uv wheel is known for {sys.platform} {machine}; install uv yourself")


def choose_wheel(files: list[dict[str, object]], version: str) -> dict[str, object]:
    wheels = [f for f in files if str(f.get("filename", "")).startswith(f"uv-{version}-")]
    wheels = [f for f in wheels if str(f["filename"]).endswith(".whl")]
    for tag in platform_tags():
        for wheel in wheels:
            if tag in str(wheel["filename"]):
                return wheel
    raise SystemExit(f"fetch_uv: PyPI has no uv wheel for this platform ({', '.join(platform_tags())})")


def download(url: str, accept: str = "*/*") -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=120) as response:
        data: bytes = response.read()
        return data


def fetch(version: str, dest: Path) -> Path:
    listing = json.loads(download(f"{INDEX}/uv/", SIMPLE_JSON))
    wheel = choose_wheel(listing["files"], version)
    data = download(urllib.parse.urljoin(f"{INDEX}/uv/", str(wheel["url"])))
    expected = dict(wheel["hashes"])["sha256"]  # type: ignore[call-overload]
    if hashlib.sha256(data).hexdigest() != expected:
        raise SystemExit(f"fetch_uv: {wheel['filename']} does not match the SHA-256 PyPI publishes; not used")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        member = next((n for n in archive.namelist() if n.endswith("/scripts/uv")), None)
        if member is None:
            raise SystemExit(f"fetch_uv: {wheel['filename']} has no uv binary")
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / "uv"
        target.write_bytes(archive.read(member))
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: fetch_uv.py VERSION DEST_DIR")
    print(fetch(sys.argv[1], Path(sys.argv[2])))
