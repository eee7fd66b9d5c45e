"""A partner pharmacy's own system and a courier, for the tests: real HTTP servers and clients speaking
the protocol of the pharmacy API's OpenAPI document, written from that description (no Verity code).

`PharmacyPeer` receives Verity's signed webhooks. It checks each signature and timestamp itself, and
applies each prescription once per Idempotency-Key (what a pharmacy's system is asked to do). With
`faults`, it misbehaves at random as a real endpoint does: it times out (after applying, or before),
answers 500 or 503, drops the connection without an answer, or answers twice on one connection.

`SandboxCourier` sends Royal Mail / DPD style tracking events to Verity's courier webhook over HTTP.
`serve(app)` runs a Flask app on a real port in a thread, for callers that must use HTTP.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 300


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    message = f"{timestamp}.{method} {path}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, *, method: str = "POST", path: str, key: str | None = None,
                   timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"Content-Type": "application/json", "X-Verity-Timestamp": stamp,
            "X-Verity-Signature": sign(secret, stamp, method, path, body), "Idempotency-Key": key or uuid.uuid4().hex}


@dataclass
class Faults:
    """Probabilities of each misbehaviour per request (the rest are answered 200 at once)."""

    timeout: float = 0.0
    error: float = 0.0
    drop: float = 0.0
    double_answer: float = 0.0
    #: How long a "timeout" keeps the connection open (longer than Verity's webhook timeout).
    hang_seconds: float = 2.5


@dataclass
class PharmacyPeer:
    secret: str
    faults: Faults = field(default_factory=Faults)
    seed: int = 8
    #: Idempotency-Key -> the first body received with it (what the pharmacy's system holds).
    received: dict[str, dict] = field(default_factory=dict)
    #: How many times each key was applied (must stay 1) and delivered (retries included).
    applied: Counter = field(default_factory=Counter)
    deliveries: Counter = field(default_factory=Counter)
    #: (outcome, key) of every request, in order.
    log: list[tuple[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None

    # Running ----------------------------------------------------------------------------------

    def start(self) -> PharmacyPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                return

            def do_POST(self) -> None:
                peer._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/webhook"

    def wait_for(self, count: int, timeout: float) -> bool:
        """Until `count` distinct prescriptions were received (bounded)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    # One request ------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        key = handler.headers.get("Idempotency-Key") or ""
        stamp = handler.headers.get("X-Verity-Timestamp") or ""
        signature = handler.headers.get("X-Verity-Signature") or ""
        path = urllib.parse.urlsplit(handler.path).path
        if not key or not hmac.compare_digest(sign(self.secret, stamp, "POST", path, body), signature) \
                or not stamp.isdigit() or abs(time.time() - int(stamp)) > TOLERANCE:
            with self._lock:
                self.refused.append(key)
            self._answer(handler, 401, {"error": "bad signature"})
            return
        with self._lock:
            self.deliveries[key] += 1
            roll = self._random.random()
            before = self._random.random() < 0.5
        faults = self.faults
        if roll < faults.timeout:
            if before:
                self._apply(key, body)
            time.sleep(faults.hang_seconds)  # Verity gave up waiting: it will send again
            self._outcome("timeout", key)
            with contextlib.suppress(OSError):
                self._answer(handler, 200, {"ok": True})
            return
        roll -= faults.timeout
        if roll < faults.error:
            if before:
                self._apply(key, body)  # crashed after committing: the retry must not apply it again
            self._outcome("error", key)
            self._answer(handler, self._random.choice((500, 502, 503)), {"error": "try again"})
            return
        roll -= faults.error
        if roll < faults.drop:
            if before:
                self._apply(key, body)
            self._outcome("drop", key)
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return
        roll -= faults.drop
        self._apply(key, body)
        if roll < faults.double_answer:
            self._outcome("double", key)
            self._answer(handler, 200, {"ok": True})
            with contextlib.suppress(OSError):
                self._answer(handler, 200, {"ok": True, "again": True})
            return
        self._outcome("ok", key)
        self._answer(handler, 200, {"ok": True})

    def _apply(self, key: str, body: bytes) -> None:
        with self._changed:
            if key not in self.received:
                self.received[key] = json.loads(body)
                self.applied[key] += 1
                self._changed.notify_all()

    def _outcome(self, outcome: str, key: str) -> None:
        with self._lock:
            self.log.append((outcome, key))

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()


# Talking to Verity ----------------------------------------------------------------------------

@dataclass
class Answer:
    status: int
    body: dict


def post_json(url: str, payload: dict, *, secret: str, api_key: str | None = None, key: str | None = None,
              timestamp: int | None = None) -> Answer:
    body = json.dumps(payload).encode()
    headers = signed_headers(secret, body, path=urllib.parse.urlsplit(url).path, key=key, timestamp=timestamp)
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 (our http URL)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return Answer(response.status, json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, json.loads(exc.read() or b"{}"))


@dataclass
class SandboxCourier:
    """A courier that tells Verity where a parcel is, as Royal Mail's or DPD's tracking webhooks do."""

    base_url: str
    secret: str
    carrier: str = "sandbox"
    sent: list[tuple[str, int]] = field(default_factory=list)

    def emit(self, tracking_number: str, status: str, *, event_id: str | None = None, note: str | None = None,
             occurred_at: str | None = None) -> Answer:
        event = {"event_id": event_id or f"evt-{uuid.uuid4().hex[:12]}", "tracking_number": tracking_number,
                 "status": status}
        if note:
            event["note"] = note
        if occurred_at:
            event["occurred_at"] = occurred_at
        answer = post_json(f"{self.base_url}/api/courier/v1/{self.carrier}/events", event, secret=self.secret,
                           key=event["event_id"])
        self.sent.append((status, answer.status))
        return answer


@contextlib.contextmanager
def serve(app) -> Iterator[str]:
    """The Flask app on a free port of 127.0.0.1, in a thread; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
