"""docs/deployment.md as run: its systemd unit passes ``systemd-analyze verify``, and its nginx configuration,
in front of a gateway with TLS, passes a stream through event by event (no buffering)."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.docs import code_block
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import ADMIN_KEY, fake_provider, gateway_settings, serve_gateway

pytestmark = pytest.mark.sockets
DOCUMENT = "docs/deployment.md"
ANYGATE = Path(sys.executable).with_name("anygate")


def test_the_systemd_unit_is_one_systemd_accepts(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = code_block(DOCUMENT, "ini", "[Service]").replace("/opt/anygate/bin/anygate", str(ANYGATE))
    path = tmp_path / "anygate.service"
    path.write_text(unit, encoding="utf-8")
    verified = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == ""  # an unknown key is only a warning: none is allowed
    assert "TimeoutStopSec=45" in unit and "KillSignal=SIGTERM" in unit  # longer than the 30 s drain


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def trusting(certificate: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def nginx_in_front(gateway_port: int, directory: Path) -> Iterator[tuple[int, Path]]:
    """nginx running the document's configuration: its upstream the gateway, its certificate self-signed,
    listening on a loopback port instead of 443."""
    cert, key = self_signed(directory)
    port = free_port()
    server = (
        code_block(DOCUMENT, "nginx", "proxy_pass http://anygate")
        .replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{gateway_port};")
        .replace("listen 443 ssl", f"listen 127.0.0.1:{port} ssl")
        .replace("/etc/letsencrypt/live/llm.example.edu/fullchain.pem", str(cert))
        .replace("/etc/letsencrypt/live/llm.example.edu/privkey.pem", str(key))
    )
    temp = "\n".join(
        f"    {kind}_temp_path {directory}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = directory / "nginx.conf"
    config.write_text(
        f"daemon off;\nworker_processes 1;\npid {directory}/nginx.pid;\nerror_log {directory}/error.log;\n"
        f"events {{}}\nhttp {{\n    access_log off;\n{temp}\n{server}\n}}\n",
        encoding="utf-8",
    )
    process = subprocess.Popen(["nginx", "-p", str(directory), "-c", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else "nginx exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start listening"
                time.sleep(0.05)
        yield port, cert
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stderr is not None:
            process.stderr.close()


def test_nginx_as_documented_passes_a_stream_event_by_event_over_tls(tmp_path: Path) -> None:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    with FakeUpstream.start_in_thread(models=["m"]) as up:
        # Two events, then the upstream holds the stream open: a buffering proxy would pass neither.
        up.script(Reply(chunks=5, hang_after_events=2), path="/v1/chat/completions")
        with (
            serve_gateway(gateway_settings(fake_provider(up))) as gateway,
            nginx_in_front(gateway.port, tmp_path) as (port, cert),
            httpx2.Client(base_url=f"https://127.0.0.1:{port}", verify=trusting(cert), timeout=10) as client,
        ):
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            body = {"model": "fake/m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            events = []
            with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as answer:
                assert answer.status_code == 200
                for line in answer.iter_lines():
                    if line.startswith("data: "):
                        events.append(line)
                    if len(events) == 2:
                        break  # both arrived while the stream is still open
            models = client.get("/v1/models", headers=headers)
    assert all('"chat.completion.chunk"' in event for event in events)
    assert models.status_code == 200 and models.json()["data"][0]["id"] == "fake/m"


def test_the_install_steps_name_a_uv_a_checkout_has_and_export_the_locked_requirements(tmp_path: Path) -> None:
    """The "Installing" block's uv is the one scripts/bootstrap leaves in .venv (no uv need be on PATH), and
    its export writes the locked requirements without anygate itself and prints nothing (offline)."""
    from tests.support.docs import ROOT

    block = code_block(DOCUMENT, "sh", "uv build --wheel")
    export = next(line for line in block.splitlines() if " export " in line and "uv" in line)
    assert export.startswith(".venv/bin/uv ") and (ROOT / ".venv/bin/uv").exists()
    command = export.replace("-o requirements.txt", f"-o {tmp_path / 'requirements.txt'}") + " --offline"
    ran = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
    requirements = (tmp_path / "requirements.txt").read_text(encoding="utf-8")
    assert "\nfastapi==" in requirements and "\npytest==" not in requirements
    assert not any(line.startswith("anygate") for line in requirements.splitlines())
