"""A small identity provider for the tests: a real HTTP server speaking the protocol documented in
app/identity/providers.py, written from that description (it shares no code with Verity's client).

It accepts checks and their images, and when a test says so it POSTs a signed webhook result to
the check's webhook URL, as an Onfido/Jumio bridge would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ProviderCheck:
    reference: str
    idempotency_key: str
    request: dict
    images: dict[str, bytes] = field(default_factory=dict)
    content_types: dict[str, str] = field(default_factory=dict)
    #: How each image arrived: "chunked" or "length".
    transfer: dict[str, str] = field(default_factory=dict)
    submitted: bool = False


@dataclass
class Delivery:
    status: int
    body: dict


class IdentityProvider:
    def __init__(self, secret: str, api_key: str | None = None):
        self.secret = secret
        self.api_key = api_key
        self.checks: dict[str, ProviderCheck] = {}
        self.by_key: dict[str, str] = {}
        #: (method, path, status) of every request received.
        self.requests: list[tuple[str, str, int]] = []
        #: (method, path suffix, how many more times) of requests to answer with 503.
        self._failures: list[list] = []
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Running ------------------------------------------------------------------------------

    def start(self) -> IdentityProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:  # keep the test output clean
                return

            def do_POST(self) -> None:
                provider._handle(self)

            def do_PUT(self) -> None:
                provider._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, method: str, suffix: str, times: int = 1) -> None:
        """Answer the next `times` requests of `method` to a path ending in `suffix` with 503, as a
        provider in the middle of an outage."""
        self._failures.append([method, suffix, times])

    def wait_for_submitted(self, timeout: float = 10.0) -> ProviderCheck:
        """The first check whose images are in and that was submitted (bounded wait)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                ready = [c for c in self.checks.values() if c.submitted]
                if ready:
                    return ready[0]
                left = deadline - time.monotonic()
                assert left > 0, f"no check was submitted to the provider; requests: {self.requests}"
                self._changed.wait(left)

    # The webhook --------------------------------------------------------------------------

    def send_result(self, reference: str, result: str, reason: str | None = None, *, event_id: str | None = None,
                    timestamp: int | None = None, secret: str | None = None, url: str | None = None,
                    retry_for: float = 0.0) -> Delivery:
        """POST a signed result to the check's webhook URL and return Verity's answer.

        With `retry_for`, a 404 or 5xx is sent again (newly signed, same event id) until accepted or
        the time is up, as providers retry deliveries: Verity may not have recorded the reference yet.
        """
        check = self.checks[reference]
        event_id = event_id or f"evt_{secrets.token_hex(8)}"
        body = json.dumps({"event_id": event_id, "type": "check.completed", "reference": reference,
                           "result": result, "reason": reason}).encode()
        deadline = time.monotonic() + retry_for
        pause = 0.05
        while True:
            delivery = self._deliver(url or check.request["webhook_url"], body, timestamp=timestamp,
                                     secret=secret or self.secret)
            if (delivery.status != 404 and delivery.status < 500) or time.monotonic() + pause > deadline:
                return delivery
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    @staticmethod
    def _deliver(url: str, body: bytes, *, timestamp: int | None, secret: str) -> Delivery:
        sent_at = str(int(time.time()) if timestamp is None else timestamp)
        mac = hmac.new(secret.encode(), sent_at.encode() + b"." + body, hashlib.sha256)
        request = urllib.request.Request(  # noqa: S310 (the URL Verity gave, or the test's own)
            url, data=body, method="POST",
            headers={"Content-Type": "application/json", "X-Verity-Timestamp": sent_at,
                     "X-Verity-Signature": f"sha256={mac.hexdigest()}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return Delivery(response.status, json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            return Delivery(exc.code, json.loads(exc.read() or b"{}"))

    # Requests -----------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.rstrip("/")
        body, transfer = _read_body(handler)
        status, answer = self._route(handler, path, body, transfer)
        self.requests.append((handler.command, path, status))
        payload = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        with self._changed:
            self._changed.notify_all()

    def _route(self, handler: BaseHTTPRequestHandler, path: str, body: bytes, transfer: str) -> tuple[int, dict]:
        for failure in self._failures:
            method, suffix, times = failure
            if times > 0 and handler.command == method and path.endswith(suffix):
                failure[2] -= 1
                return 503, {"error": "temporarily unavailable"}
        if self.api_key and handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {"error": "bad api key"}
        parts = path.strip("/").split("/")
        if handler.command == "POST" and parts == ["checks"]:
            return self._create(handler, body)
        if len(parts) == 3 and parts[0] == "checks" and parts[1] in self.checks:
            check = self.checks[parts[1]]
            if handler.command == "PUT" and parts[2] in ("document", "selfie"):
                check.images[parts[2]] = body
                check.content_types[parts[2]] = handler.headers.get("Content-Type", "")
                check.transfer[parts[2]] = transfer
                return 200, {"received": len(body)}
            if handler.command == "POST" and parts[2] == "submit":
                if set(check.images) != {"document", "selfie"}:
                    return 422, {"error": "images missing"}
                check.submitted = True
                return 202, {"status": "processing"}
        return 404, {"error": "not found"}

    def _create(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict]:
        key = handler.headers.get("Idempotency-Key")
        if not key:
            return 400, {"error": "Idempotency-Key is required"}
        if key in self.by_key:
            return 200, {"reference": self.by_key[key]}
        request = json.loads(body)
        for required in ("document_type", "document_expiry", "applicant", "webhook_url"):
            if required not in request:
                return 400, {"error": f"{required} is required"}
        reference = f"chk_{secrets.token_hex(6)}"
        self.checks[reference] = ProviderCheck(reference, key, request)
        self.by_key[key] = reference
        return 201, {"reference": reference}


def _read_body(handler: BaseHTTPRequestHandler) -> tuple[bytes, str]:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()  # the blank line after the last chunk
                return b"".join(chunks), "chunked"
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length), "length"
