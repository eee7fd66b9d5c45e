"""The sample coturn configuration (deploy/turnserver.conf), run by Debian's coturn on loopback with its ports and
paths moved: the TURN credentials Verity mints for a call (app/consult/settings.py) get a relay over UDP, TCP and
TLS; a wrong or expired credential is refused."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aioice.stun
import aioice.turn
import pytest

from app.consult.settings import turn_credentials
from tests.test_multiworker import _self_signed

REPO = Path(__file__).resolve().parent.parent
SECRET = "turn-test-secret"
DEADLINE = 20.0


def _free_port_both() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 a moment ago (TURN listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no free port")


def _config(folder: Path, port: int, tls_port: int) -> Path:
    cert, key = _self_signed(folder)
    text = (REPO / "deploy" / "turnserver.conf").read_text()
    moved = {
        "listening-port": str(port), "tls-listening-port": str(tls_port), "listening-ip": "127.0.0.1",
        "static-auth-secret": SECRET, "cert": str(cert), "pkey": str(key), "log-file": str(folder / "turn.log"),
    }
    for option, value in moved.items():
        text, found = re.subn(rf"^{re.escape(option)}=.*$", f"{option}={value}", text, flags=re.MULTILINE)
        assert found == 1, option
    # Where the test's coturn keeps its own files, and the relay on loopback (the sample's denied-peer-ip lines
    # stop relaying *to* loopback peers, not allocations on it).
    text += f"\nrelay-ip=127.0.0.1\npidfile={folder / 'turn.pid'}\nuserdb={folder / 'turndb'}\nno-dtls\n"
    path = folder / "turnserver.conf"
    path.write_text(text)
    return path


@pytest.fixture
def coturn(tmp_path) -> Iterator[tuple[int, int, Path]]:
    binary = shutil.which("turnserver") or "/usr/bin/turnserver"
    if not Path(binary).exists():
        pytest.fail("coturn is not installed: `make browser-deps` installs Debian's coturn")
    port = _free_port_both()
    tls_port = next(p for p in iter(_free_port_both, None) if p != port)
    config = _config(tmp_path, port, tls_port)
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE
        while True:  # ready when it answers a TURN/STUN port over TCP
            assert process.poll() is None, (tmp_path / "turn.log").read_text(errors="replace")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.monotonic() < deadline, "coturn did not start"
            time.sleep(0.1)
        yield port, tls_port, tmp_path / "cert.pem"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _allocate(port: int, username: str, password: str, *, transport: str = "udp",
              tls: ssl.SSLContext | None = None) -> tuple[str, int]:
    """A TURN allocation (aioice, the ICE library under aiortc); returns the relayed address."""
    async def run() -> tuple[str, int]:
        relay, _protocol = await asyncio.wait_for(aioice.turn.create_turn_endpoint(
            asyncio.DatagramProtocol, ("127.0.0.1", port), username, password, transport=transport, ssl=tls),
            timeout=DEADLINE)
        try:
            return relay.get_extra_info("sockname")
        finally:
            relay.close()

    return asyncio.run(run())


def test_verity_minted_credentials_get_a_relay_over_udp_tcp_and_tls(coturn):
    port, tls_port, cert = coturn
    username, credential = turn_credentials(SECRET, "42", 600)
    assert username.endswith(":42")
    for transport in ("udp", "tcp"):
        host, relayed = _allocate(port, username, credential, transport=transport)
        assert host == "127.0.0.1" and 49152 <= relayed <= 65535
    tls = ssl.create_default_context(cafile=str(cert))
    host, relayed = _allocate(tls_port, username, credential, transport="tcp", tls=tls)
    assert host == "127.0.0.1" and 49152 <= relayed <= 65535


def test_a_wrong_or_expired_credential_is_refused(coturn):
    port, _tls_port, _cert = coturn
    username, _credential = turn_credentials(SECRET, "42", 600)
    with pytest.raises(aioice.stun.TransactionFailed, match="401"):
        _allocate(port, username, turn_credentials("another-secret", "42", 600)[1])
    expired, credential = turn_credentials(SECRET, "42", 600, now=time.time() - 3600)
    with pytest.raises(aioice.stun.TransactionFailed, match="401"):
        _allocate(port, expired, credential)
