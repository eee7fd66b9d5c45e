"""Virus scanning of uploads by ClamAV's daemon (clamd), when one is configured.

Off by default. With `VERITY_CLAMD_SOCKET` (the path of clamd's unix socket, its `LocalSocket`)
or `VERITY_CLAMD_HOST` (and `VERITY_CLAMD_PORT`, default 3310: its `TCPSocket`), every upload is
sent to clamd after its type is known and before anything parses it; the documents service
(services._ingest) calls `scan_file` and refuses the file on what it says.

The adapter's interface:

    configured() -> bool                 whether a scanner is set up for this app
    scan_file(path) -> None              raise Infected(signature) or ScannerUnavailable(why)

What goes over the socket is clamd's INSTREAM command (clamd(8), "INSTREAM"):

    client: b"zINSTREAM\\0"
    client: <length: 4 bytes, unsigned, big-endian><that many bytes>   ... one per piece of the file
    client: b"\\0\\0\\0\\0"                                               end of the stream
    clamd:  b"stream: OK\\0"                       clean
            b"stream: <signature> FOUND\\0"         e.g. "stream: Eicar-Test-Signature FOUND"
            b"INSTREAM size limit exceeded. ERROR\\0", or "<reason> ERROR"   could not scan

The `z` prefix asks for NUL-terminated replies. The file is streamed in SCAN_PIECE_BYTES pieces,
never held in memory. clamd refuses streams over its `StreamMaxLength` (25 MB by default): set it
to at least VERITY_DOCUMENTS_MAX_BYTES (50 MB), or larger uploads fail as "could not scan".

Failing closed: when a scanner is configured but cannot answer (not running, timed out, a reply
that is not OK or FOUND), the upload is refused with "try again later" and nothing is stored; an
unscanned file never reaches the store. The PyPI clients for clamd (`clamd`, `pyclamd`) have had
no release since 2014 and 2017; the protocol is small enough to speak here.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from flask import current_app

log = logging.getLogger(__name__)

#: Bytes sent to clamd in one INSTREAM piece.
SCAN_PIECE_BYTES = 64 * 1024
#: Longest reply clamd sends (a signature name is short); anything longer is not clamd.
MAX_REPLY_BYTES = 4096


class ScanError(Exception):
    """The scan did not say "clean"."""


class Infected(ScanError):
    """clamd found something; `signature` is its name for it (e.g. "Eicar-Test-Signature")."""

    def __init__(self, signature: str):
        super().__init__(f"clamd found {signature}")
        self.signature = signature


class ScannerUnavailable(ScanError):
    """A scanner is configured but did not give an answer: refuse the upload, store nothing."""


def configured() -> bool:
    config = current_app.config
    return bool(config.get("CLAMD_SOCKET") or config.get("CLAMD_HOST"))


def scan_file(path: Path) -> None:
    """Scan the file at `path` if a scanner is configured; raise Infected or ScannerUnavailable."""
    if not configured():
        return
    config = current_app.config
    timeout = float(config.get("CLAMD_TIMEOUT") or 30)
    try:
        with _connect(config, timeout) as conn, open(path, "rb") as fh:
            reply = _instream(conn, fh)
    except OSError as exc:  # refused, no such socket, timed out, reset mid-stream
        log.warning("virus scanner unreachable: %s", type(exc).__name__)
        raise ScannerUnavailable(f"clamd unreachable ({type(exc).__name__})") from exc
    verdict = interpret(reply)
    if verdict is not None:
        log.warning("virus scanner found %s in an upload", verdict)
        raise Infected(verdict)


def interpret(reply: bytes) -> str | None:
    """None for a clean file, the signature for an infected one; ScannerUnavailable otherwise."""
    text = reply.rstrip(b"\0").decode("utf-8", "replace").strip()
    if text == "stream: OK":
        return None
    if text.startswith("stream: ") and text.endswith(" FOUND"):
        return text[len("stream: "):-len(" FOUND")].strip() or "unnamed"
    if "size limit exceeded" in text:
        log.error("clamd refused an upload as too long: raise its StreamMaxLength to at least "
                  "VERITY_DOCUMENTS_MAX_BYTES")
    else:
        log.warning("virus scanner answered %r", text[:200])
    raise ScannerUnavailable(f"clamd could not scan the file: {text[:200]}")


def _connect(config, timeout: float) -> socket.socket:
    if config.get("CLAMD_SOCKET"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            conn.connect(config["CLAMD_SOCKET"])
        except OSError:
            conn.close()
            raise
        return conn
    return socket.create_connection((config["CLAMD_HOST"], int(config.get("CLAMD_PORT") or 3310)), timeout=timeout)


def _instream(conn: socket.socket, fh) -> bytes:
    conn.sendall(b"zINSTREAM\0")
    try:
        while piece := fh.read(SCAN_PIECE_BYTES):
            conn.sendall(len(piece).to_bytes(4, "big") + piece)
        conn.sendall(b"\0\0\0\0")
    except (BrokenPipeError, ConnectionResetError):
        # clamd closes the stream early when it passes StreamMaxLength; its reply says so.
        pass
    reply = b""
    while not reply.endswith(b"\0") and len(reply) < MAX_REPLY_BYTES:
        data = conn.recv(MAX_REPLY_BYTES)
        if not data:
            break
        reply += data
    if not reply:
        raise ConnectionResetError("clamd closed the connection without a reply")
    return reply
