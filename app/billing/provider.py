"""Payment providers: who takes the patient's card. Verity never sees card details.

Configuration: BILLING_PROVIDER (settings.py) picks one of

- `sandbox` (the default in demo mode, tests and development): Verity's own checkout page, clearly labelled as a
  sandbox, where "Pay" confirms the payment at once. No money moves. Refused in production (`make run` needs no
  external service).
- `http`: a hosted-checkout provider (a Stripe Checkout / GoCardless / Adyen bridge) speaking the wire protocol below.
- `none`: no online payments; reception records card-terminal, bank-transfer and cash payments by hand.

The adapter interface
---------------------
A provider is an object with

    name: str
    create_checkout(checkout, invoice, *, return_url, cancel_url) -> CheckoutSession(url, reference)

`create_checkout` opens a payment page for `checkout.amount_pence` of `invoice` and returns where to send the
patient and the provider's reference for that checkout. It must be idempotent on `checkout.public_id` (sent as the
Idempotency-Key): the same id again gives the same reference. It raises ProviderError when the provider cannot
take it now (the patient is told to try again).

The HTTP wire protocol
----------------------
1. `POST {BILLING_PROVIDER_URL}/checkouts`, JSON, headers `Idempotency-Key: <checkout public id>` and
   `Authorization: Bearer <BILLING_PROVIDER_API_KEY>` (when set):
   `{"client_reference", "amount_pence", "currency": "GBP", "description", "return_url", "cancel_url",
   "webhook_url"}` → 200/201 `{"reference": "...", "checkout_url": "https://..."}`.
2. The patient pays on `checkout_url`; the provider then sends the webhook (step 3) and sends the patient's
   browser to `return_url?reference=<reference>` (or `cancel_url` when they give up).
3. Webhook: `POST {webhook_url}` (`/billing/webhooks/http`) with JSON
   `{"event_id", "type": "checkout.paid" | "checkout.failed", "reference", "amount_pence", "currency": "GBP",
   "payment_reference"}` signed like every inbound request to Verity (app/pharmacy/signatures.py, reused here):
   `X-Verity-Timestamp: <unix seconds>` and
   `X-Verity-Signature: sha256=<hex HMAC-SHA256(BILLING_WEBHOOK_SECRET, timestamp + "." + "POST <path>" + "." + body)>`,
   so the signature covers the timestamp and the body (and the request line).
   Answers, each with `{"error": reason}` when refused:
   200 applied; 401 missing or bad signature, or a timestamp more than BILLING_WEBHOOK_TOLERANCE_SECONDS from our
   clock (a stale signature is no signature); 400 malformed body; 404 unknown checkout reference (retry later);
   409 an event id already received (a replay: nothing is applied again), a checkout no longer open (paid already,
   or paid another way: refund it at the provider), or an amount or currency that is not the checkout's.
Every refusal is written to the audit trail (`billing.webhook_refused`) with its reason.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from app.billing.settings import ConfigurationError, provider_name, setting

if TYPE_CHECKING:
    from app.billing.models import Checkout, Invoice

SANDBOX, HTTP, NONE = "sandbox", "http", "none"
PAID, FAILED = "checkout.paid", "checkout.failed"
REQUEST_TIMEOUT_SECONDS = 15


class ProviderError(RuntimeError):
    """The provider could not open a checkout now."""


@dataclass(frozen=True)
class CheckoutSession:
    url: str
    reference: str


@dataclass(frozen=True)
class ProviderEvent:
    """A provider's report about one checkout, authenticated and parsed."""

    event_id: str
    type: str
    reference: str
    amount_pence: int
    currency: str
    payment_reference: str


class Provider(Protocol):
    name: str

    def create_checkout(self, checkout: Checkout, invoice: Invoice, *, return_url: str,
                        cancel_url: str) -> CheckoutSession: ...


class SandboxProvider:
    """Verity's own labelled test checkout (routes.sandbox_checkout): no money moves."""

    name = SANDBOX

    def create_checkout(self, checkout: Checkout, invoice: Invoice, *, return_url: str,
                        cancel_url: str) -> CheckoutSession:
        from flask import url_for

        return CheckoutSession(url_for("billing.sandbox_checkout", public_id=checkout.public_id),
                               f"sbx_{checkout.public_id}")


class HttpProvider:
    """A client of the wire protocol above."""

    name = HTTP

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = REQUEST_TIMEOUT_SECONDS):
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigurationError("BILLING_PROVIDER_URL must be an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def create_checkout(self, checkout: Checkout, invoice: Invoice, *, return_url: str,
                        cancel_url: str) -> CheckoutSession:
        from app.notifications import services as notifications

        body = json.dumps({
            "client_reference": checkout.public_id, "amount_pence": checkout.amount_pence, "currency": "GBP",
            "description": f"Invoice {invoice.number}", "return_url": return_url, "cancel_url": cancel_url,
            "webhook_url": notifications.absolute(notifications.link_to("billing.webhook", provider_name=self.name)),
        }).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "Verity",
                   "Idempotency-Key": checkout.public_id}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        # The scheme is checked to be http(s) in __init__, so this is not a file: or custom URL.
        request = urllib.request.Request(self.base_url + "/checkouts", data=body, method="POST",  # noqa: S310
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310  # nosec B310
                raw = response.read(100_000)
        except urllib.error.HTTPError as exc:
            raise ProviderError(f"the payment provider answered {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise ProviderError(f"the payment provider could not be reached ({type(exc).__name__})") from None
        try:
            answer: Any = json.loads(raw)
        except ValueError:
            raise ProviderError("the payment provider answered with something that is not JSON") from None
        reference = answer.get("reference") if isinstance(answer, dict) else None
        url = answer.get("checkout_url") if isinstance(answer, dict) else None
        if not isinstance(reference, str) or not 0 < len(reference) <= 100:
            raise ProviderError("the payment provider answered without a usable reference")
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https") or len(url) > 1000:
            raise ProviderError("the payment provider answered without a usable checkout address")
        return CheckoutSession(url, reference)


def configured() -> Provider | None:
    """The provider online payments go to, or None when they are off."""
    return by_name(provider_name())


def by_name(name: str) -> Provider | None:
    if name == NONE:
        return None
    if name == SANDBOX:
        return SandboxProvider()
    if name == HTTP:
        url = setting("BILLING_PROVIDER_URL")
        if not url:
            raise ConfigurationError("BILLING_PROVIDER=http needs BILLING_PROVIDER_URL")
        return HttpProvider(url, setting("BILLING_PROVIDER_API_KEY"))
    raise ConfigurationError(f"unknown BILLING_PROVIDER {name!r}: use 'sandbox', 'http' or 'none'")


def origin() -> str | None:
    """The provider's checkout origin, for the pay pages' CSP form-action (a form posts to us, we redirect there)."""
    if provider_name() != HTTP or not setting("BILLING_PROVIDER_URL"):
        return None
    parts = urllib.parse.urlsplit(setting("BILLING_PROVIDER_URL"))
    return f"{parts.scheme}://{parts.netloc}"


def check_configuration() -> None:
    """Refuse to start with online payments that cannot work."""
    from flask import current_app

    name = provider_name()
    by_name(name)
    if name == HTTP and not setting("BILLING_WEBHOOK_SECRET"):
        raise ConfigurationError("BILLING_PROVIDER=http needs BILLING_WEBHOOK_SECRET")
    if name == SANDBOX and not (current_app.config.get("DEMO_MODE") or current_app.config.get("TESTING")) \
            and os.environ.get("VERITY_ENV") == "production":
        raise ConfigurationError("BILLING_PROVIDER=sandbox takes no money: it is for demo mode and tests only")


# Webhooks -------------------------------------------------------------------------------------

class WebhookRefused(Exception):
    """A webhook we will not act on; `status` and `reason` go back to the sender as JSON."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def verify_webhook(name: str, *, timestamp: str | None, signature: str | None, body: bytes, path: str,
                   now: float | None = None) -> None:
    """Authenticate a webhook with the shared helper every inbound signed request uses (app/pharmacy/signatures.py)."""
    from app.pharmacy import signatures

    if name != HTTP:
        raise WebhookRefused(404, f"no provider {name!r} sends webhooks here")
    secret = setting("BILLING_WEBHOOK_SECRET")
    if not secret:
        raise WebhookRefused(401, "no webhook secret is configured: every webhook is refused")
    try:
        signatures.verify(secret, timestamp=timestamp, signature=signature, body=body, method="POST", path=path,
                          tolerance=int(setting("BILLING_WEBHOOK_TOLERANCE_SECONDS")), now=now)
    except signatures.SignatureRefused as exc:
        raise WebhookRefused(exc.status, exc.reason) from None


def parse_event(body: bytes) -> ProviderEvent:
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookRefused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookRefused(400, "the body must be a JSON object")
    event_id, kind, reference = data.get("event_id"), data.get("type"), data.get("reference")
    amount, currency = data.get("amount_pence"), data.get("currency")
    payment_reference = data.get("payment_reference")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 100:
        raise WebhookRefused(400, "event_id is required (a unique string of at most 100 characters)")
    if kind not in (PAID, FAILED):
        raise WebhookRefused(400, f"type must be {PAID!r} or {FAILED!r}")
    if not isinstance(reference, str) or not 0 < len(reference) <= 100:
        raise WebhookRefused(400, "reference is required")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise WebhookRefused(400, "amount_pence must be a positive whole number of pence")
    if not isinstance(currency, str):
        raise WebhookRefused(400, "currency is required")
    if kind == PAID and (not isinstance(payment_reference, str) or not 0 < len(payment_reference) <= 100):
        raise WebhookRefused(400, "payment_reference is required for a paid checkout")
    return ProviderEvent(event_id, kind, reference, amount, currency.upper(), payment_reference or "")
