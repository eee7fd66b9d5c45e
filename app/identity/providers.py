"""Who decides an identity check: the built-in staff review queue, or an external provider.

Configuration picks one (read when needed, environment variables as fallback):

| key | meaning |
| --- | --- |
| IDENTITY_PROVIDER | "staff" (default): reception or admin decide in the review queue; "http": a provider decides |
| IDENTITY_PROVIDER_URL | base URL of the provider's API (with "http") |
| IDENTITY_PROVIDER_API_KEY | sent as "Authorization: Bearer <key>" to the provider, when set |
| IDENTITY_WEBHOOK_SECRET | shared secret of the provider's signed webhooks (with "http") |
| IDENTITY_MAX_UPLOAD_BYTES | largest identity form post, both photos together (default 25 MB) |

The adapter interface
---------------------
A provider is an object with

    name: str                  stored on each check; the webhook URL names it
    remote: bool               True when starting a check talks to another system
    start_check(check, *, idempotency_key) -> reference

`start_check` hands the check over and returns the provider's reference for it. For a remote
provider it runs from the outbox worker (`identity.start_check`), so it is retried with backoff
until it succeeds and must be idempotent: the same key must give the same reference. Results come
back by webhook, `POST /identity/webhooks/<name>`, decided in app/identity/services.py.

The HTTP provider's wire protocol (what an Onfido/Jumio bridge implements)
--------------------------------------------------------------------------
1. `POST {url}/checks`, JSON, header `Idempotency-Key: <key>`:
   `{"client_reference", "document_type": "passport" | "driving_licence", "document_expiry": "YYYY-MM-DD",
   "applicant": {"full_name", "date_of_birth"}, "webhook_url"}` → 200/201 `{"reference": "..."}`.
   The same key again answers the same reference and creates nothing.
2. `PUT {url}/checks/{reference}/document` and `PUT {url}/checks/{reference}/selfie`: the image,
   streamed (chunked), with its Content-Type. Repeating a PUT replaces the image.
3. `POST {url}/checks/{reference}/submit` → 2xx: the provider starts checking.
Any other status is a failure, retried later by the outbox.

Webhook: `POST {webhook_url}` with JSON `{"event_id", "reference", "result": "approved" | "rejected",
"reason"}` (reason: shown to the patient when rejected), and headers
`X-Verity-Timestamp: <unix seconds>` and
`X-Verity-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with IDENTITY_WEBHOOK_SECRET>`.
Answers: 200 accepted; 401 missing or bad signature; 400 stale timestamp (more than 5 minutes
from our clock) or malformed body; 404 unknown provider or reference (retry later: the reference
may not be recorded yet); 409 an event id already received, or a check already decided (do not retry).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from flask import current_app

if TYPE_CHECKING:
    from app.identity.models import IdentityCheck

STAFF, HTTP = "staff", "http"
SIGNATURE_HEADER = "X-Verity-Signature"
TIMESTAMP_HEADER = "X-Verity-Timestamp"
#: How far a webhook's timestamp may be from our clock, either way.
WEBHOOK_TOLERANCE_SECONDS = 300
REQUEST_TIMEOUT_SECONDS = 30
#: The identity domain's configuration keys and their defaults (the README's table lists them).
DEFAULTS: dict[str, Any] = {
    "IDENTITY_PROVIDER": STAFF, "IDENTITY_PROVIDER_URL": None, "IDENTITY_PROVIDER_API_KEY": None,
    "IDENTITY_WEBHOOK_SECRET": None, "IDENTITY_MAX_UPLOAD_BYTES": 25 * 1024 * 1024,
}


class ProviderError(RuntimeError):
    """The provider could not take the check now; the outbox tries again later."""


class ConfigurationError(RuntimeError):
    pass


def setting(name: str, config: Mapping[str, Any] | None = None) -> Any:
    """A configuration value: the app's config first, then the environment, then the default."""
    config = current_app.config if config is None else config
    if name in config:
        return config[name]
    value = os.environ.get(name)
    if value is None:
        return DEFAULTS[name]
    return int(value) if isinstance(DEFAULTS[name], int) else value


class Provider(Protocol):
    name: str
    remote: bool

    def start_check(self, check: IdentityCheck, *, idempotency_key: str) -> str: ...


class StaffReview:
    """The built-in default: the check waits in the staff review queue; nothing leaves Verity."""

    name = STAFF
    remote = False

    def start_check(self, check: IdentityCheck, *, idempotency_key: str) -> str:
        return f"staff-{check.id}"


class HttpProvider:
    """A client of the wire protocol above."""

    name = HTTP
    remote = True

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = REQUEST_TIMEOUT_SECONDS):
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigurationError("IDENTITY_PROVIDER_URL must be an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def start_check(self, check: IdentityCheck, *, idempotency_key: str) -> str:
        from app.documents import services as documents
        from app.patients import services as patients

        user = patients.user_of(check.patient)
        created = self._call("POST", "/checks", body=json.dumps({
            "client_reference": idempotency_key,
            "document_type": check.document_type.value,
            "document_expiry": check.document_expiry.isoformat(),
            "applicant": {"full_name": user.full_name, "date_of_birth": check.patient.date_of_birth.isoformat()},
            "webhook_url": webhook_url(self.name),
        }).encode(), content_type="application/json", idempotency_key=idempotency_key)
        reference = str(created.get("reference") or "")
        if not reference or len(reference) > 100:
            raise ProviderError("the provider answered without a usable reference")
        quoted = urllib.parse.quote(reference, safe="")
        for part, document_id in (("document", check.document_id), ("selfie", check.selfie_document_id)):
            document = documents.get(document_id)
            if document is None:
                raise ProviderError(f"the {part} image is missing")
            self._call("PUT", f"/checks/{quoted}/{part}", body=documents.open_plaintext(document),
                       content_type=document.content_type)
        self._call("POST", f"/checks/{quoted}/submit", body=b"{}", content_type="application/json",
                   idempotency_key=f"{idempotency_key}:submit")
        return reference

    def _call(self, method: str, path: str, *, body: bytes | Iterator[bytes], content_type: str,
              idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Content-Type": content_type, "Accept": "application/json", "User-Agent": "Verity"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        # An iterator body goes out chunked, so an image is never held whole in memory here.
        # The scheme is checked to be http(s) in __init__, so these are not file: or custom URLs.
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read(1_000_000)
        except urllib.error.HTTPError as exc:
            raise ProviderError(f"{method} {path.split('/')[1]}: the provider answered {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise ProviderError(f"{method} {path.split('/')[1]}: {type(exc).__name__}") from None
        if not raw.strip():
            return {}
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ProviderError("the provider answered with something that is not JSON") from None
        return answer if isinstance(answer, dict) else {}


def webhook_url(name: str) -> str:
    """Where the provider sends results: under BASE_URL, as the worker has no request to go by."""
    from app.notifications import services as notifications

    return notifications.absolute(notifications.link_to("identity.webhook", provider=name))


def configured(config: Mapping[str, Any] | None = None) -> Provider:
    """The provider new checks go to."""
    return by_name(setting("IDENTITY_PROVIDER", config) or STAFF, config)


def by_name(name: str, config: Mapping[str, Any] | None = None) -> Provider:
    if name == STAFF:
        return StaffReview()
    if name == HTTP:
        url = setting("IDENTITY_PROVIDER_URL", config)
        if not url:
            raise ConfigurationError("IDENTITY_PROVIDER=http needs IDENTITY_PROVIDER_URL")
        return HttpProvider(url, setting("IDENTITY_PROVIDER_API_KEY", config))
    raise ConfigurationError(f"unknown IDENTITY_PROVIDER {name!r}: use 'staff' or 'http'")


def check_configuration(config: Mapping[str, Any]) -> None:
    """Refuse to start with a provider that cannot work (run when the blueprint is registered)."""
    provider = configured(config)
    if provider.remote and not setting("IDENTITY_WEBHOOK_SECRET", config):
        raise ConfigurationError(f"IDENTITY_PROVIDER={provider.name} needs IDENTITY_WEBHOOK_SECRET")


# Webhook signatures ---------------------------------------------------------------------------

class WebhookRefused(Exception):
    """A webhook we will not act on; `status` and `reason` go back to the sender as JSON."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class WebhookResult:
    event_id: str
    reference: str
    approved: bool
    reason: str | None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, *, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Authenticate first (401), then refuse what is too old or too new to be this delivery (400)."""
    if not timestamp or not signature:
        raise WebhookRefused(401, "missing signature or timestamp header")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip()):
        raise WebhookRefused(401, "signature does not match")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRefused(400, "timestamp is not a number of seconds") from None
    if abs(now - sent_at) > WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookRefused(400, "timestamp is more than 5 minutes from our clock")


def parse_result(body: bytes) -> WebhookResult:
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookRefused(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookRefused(400, "body is not a JSON object")
    event_id, reference, result = data.get("event_id"), data.get("reference"), data.get("result")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 100:
        raise WebhookRefused(400, "event_id is missing")
    if not isinstance(reference, str) or not 0 < len(reference) <= 100:
        raise WebhookRefused(400, "reference is missing")
    if result not in ("approved", "rejected"):
        raise WebhookRefused(400, "result must be 'approved' or 'rejected'")
    reason = data.get("reason")
    if result == "rejected" and not (isinstance(reason, str) and reason.strip()):
        raise WebhookRefused(400, "a rejection needs a reason for the patient")
    return WebhookResult(event_id, reference, result == "approved",
                         reason.strip()[:500] if isinstance(reason, str) and reason.strip() else None)
