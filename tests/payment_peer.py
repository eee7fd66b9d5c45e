"""A hosted-checkout payment provider for the tests: a real HTTP server in a thread, speaking the wire protocol
documented in app/billing/provider.py, written from that description (no Verity code).

- `POST /checkouts` opens a checkout (idempotent on the Idempotency-Key) and answers its reference and page.
- `GET /pay/<reference>` is the provider's checkout page, with a "Pay" button.
- `POST /pay/<reference>` takes the (pretend) card payment, sends the signed `checkout.paid` webhook to Verity,
  then sends the browser back to the checkout's return URL.
`webhook(...)` sends any event, signed or forged, at any time, for the webhook tests.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def sign(secret: str, timestamp: str, path: str, body: bytes) -> str:
    message = f"{timestamp}.POST {path}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    status: int
    body: dict


@dataclass
class PaymentPeer:
    secret: str
    api_key: str | None = None
    #: reference -> the checkout as opened (amount_pence, return_url, cancel_url, webhook_url, client_reference)
    checkouts: dict[str, dict] = field(default_factory=dict)
    #: Idempotency-Key -> reference
    keys: dict[str, str] = field(default_factory=dict)
    #: Every webhook sent and what Verity answered.
    deliveries: list[Delivery] = field(default_factory=list)
    refused_calls: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # Running ----------------------------------------------------------------------------------

    def start(self) -> PaymentPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                return

            def do_GET(self) -> None:
                peer._page(self)

            def do_POST(self) -> None:
                if self.path == "/checkouts":
                    peer._open(self)
                else:
                    peer._pay(self)

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
        return f"http://{host}:{port}"

    # The protocol ---------------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str,
                headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _open(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if self.api_key and handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.refused_calls += 1
            self._answer(handler, 401, b'{"error": "bad api key"}', "application/json")
            return
        data = json.loads(raw)
        key = handler.headers.get("Idempotency-Key") or ""
        with self._lock:
            reference = self.keys.get(key)
            if reference is None:
                reference = f"cs_{uuid.uuid4().hex[:16]}"
                self.keys[key] = reference
                self.checkouts[reference] = data
        answer = json.dumps({"reference": reference, "checkout_url": f"{self.url}/pay/{reference}"}).encode()
        self._answer(handler, 201, answer, "application/json")

    def _page(self, handler: BaseHTTPRequestHandler) -> None:
        reference = handler.path.rsplit("/", 1)[-1]
        checkout = self.checkouts.get(reference)
        if checkout is None:
            self._answer(handler, 404, b"no such checkout", "text/plain")
            return
        pounds = f"{checkout['amount_pence'] // 100}.{checkout['amount_pence'] % 100:02d}"
        page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Test Payments</title></head>"
                f"<body><h1>Test Payments Ltd</h1><p>{html.escape(checkout['description'])}: "
                f"&pound;{pounds}</p><form method='post' action='/pay/{reference}'>"
                f"<button type='submit'>Pay &pound;{pounds}</button></form></body></html>").encode()
        self._answer(handler, 200, page, "text/html; charset=utf-8")

    def _pay(self, handler: BaseHTTPRequestHandler) -> None:
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        reference = handler.path.rsplit("/", 1)[-1]
        checkout = self.checkouts.get(reference)
        if checkout is None:
            self._answer(handler, 404, b"no such checkout", "text/plain")
            return
        self.webhook(checkout["webhook_url"], {
            "event_id": f"evt_{uuid.uuid4().hex}", "type": "checkout.paid", "reference": reference,
            "amount_pence": checkout["amount_pence"], "currency": "GBP",
            "payment_reference": f"pay_{uuid.uuid4().hex[:12]}"})
        self._answer(handler, 303, b"", "text/plain", {"Location": checkout["return_url"]})

    # Webhooks ---------------------------------------------------------------------------------------

    def signed_headers(self, url: str, body: bytes, *, secret: str | None = None,
                       timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        path = urllib.parse.urlsplit(url).path
        return {"Content-Type": "application/json", "X-Verity-Timestamp": stamp,
                "X-Verity-Signature": sign(secret or self.secret, stamp, path, body)}

    def webhook(self, url: str, event: dict, *, secret: str | None = None, timestamp: int | None = None,
                body: bytes | None = None) -> Delivery:
        """POST one event to Verity, signed (with another secret or time when asked), and keep the answer."""
        raw = body if body is not None else json.dumps(event).encode()
        # Verity's own http:// URL on loopback (tests only).
        request = urllib.request.Request(url, data=raw, method="POST",  # noqa: S310
                                         headers=self.signed_headers(url, raw, secret=secret, timestamp=timestamp))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                delivery = Delivery(response.status, json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            delivery = Delivery(exc.code, json.loads(exc.read() or b"{}"))
        with self._lock:
            self.deliveries.append(delivery)
        return delivery
