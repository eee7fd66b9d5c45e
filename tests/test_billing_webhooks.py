"""The payment provider's side, over real HTTP: Verity opens a checkout at the provider (tests/payment_peer.py), the
provider's Pay button sends the signed webhook, and every bad webhook (forged, replayed, stale, for an unknown
checkout, for another amount or currency, malformed) is refused with a 4xx and its reason, audited, and changes
nothing. Both engines."""

from __future__ import annotations

import time

import pytest
import requests
import sqlalchemy as sa

from app.audit.models import AuditEvent
from app.auth.models import User
from app.billing import demo, services
from app.billing.models import CHECKOUT_OPEN, OPEN, PAID, Checkout, Invoice, Payment, WebhookEvent
from app.extensions import db
from app.patients import services as patients
from tests.payment_peer import PaymentPeer
from tests.pharmacy_peer import serve

SECRET = "whsec-test-0123456789"


@pytest.fixture(scope="module")
def peer():
    provider = PaymentPeer(secret=SECRET, api_key="sk-test-1").start()
    yield provider
    provider.stop()


@pytest.fixture
def app_config(peer):
    return {"BILLING_PROVIDER": "http", "BILLING_PROVIDER_URL": peer.url, "BILLING_PROVIDER_API_KEY": "sk-test-1",
            "BILLING_WEBHOOK_SECRET": SECRET}


@pytest.fixture
def verity(app):
    """Verity served on a real port (the provider calls it back), with BASE_URL pointing there."""
    with serve(app) as url:
        app.config["BASE_URL"] = url
        yield url


@pytest.fixture
def checkout(app, verity, personas):
    """An invoice of £150 and its checkout opened at the provider over HTTP: (invoice id, checkout reference)."""
    with app.app_context(), app.test_request_context():
        demo.load_prices()
        patient = patients.get(personas["patient"].patient_id)
        desk = db.session.get(User, personas["reception"].user_id)
        services.add_charge(patient, "consult:initial", by=desk)
        invoice = services.issue_invoice(patient, by=desk)
        opened = services.start_checkout(invoice, by=None, urls_for=lambda public_id: (
            f"{verity}/billing/checkouts/{public_id}/done", f"{verity}/billing/checkouts/{public_id}/done?cancelled=1"))
        return invoice.id, opened.reference, opened.url


def event(for_reference: str, **changes) -> dict:
    return {"event_id": f"evt_{time.monotonic_ns()}", "type": "checkout.paid", "reference": for_reference,
            "amount_pence": 15000, "currency": "GBP", "payment_reference": "pay_123", **changes}


def state(app, invoice_id: int) -> tuple:
    """Everything a webhook could change: the invoice's status, its payments, its checkouts' statuses."""
    with app.app_context():
        invoice = db.session.get(Invoice, invoice_id)
        payments = db.session.scalar(sa.select(sa.func.count()).select_from(Payment))
        checkouts = list(db.session.scalars(sa.select(Checkout.status).where(Checkout.invoice_id == invoice_id)))
        return invoice.status, payments, checkouts


def refusals(app) -> list[dict]:
    import json

    with app.app_context():
        return [json.loads(e.detail) for e in db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "billing.webhook_refused").order_by(AuditEvent.seq))]


def test_the_provider_checkout_pays_the_invoice_through_a_signed_webhook(app, verity, peer, checkout):
    invoice_id, reference, url = checkout
    assert url.startswith(peer.url) and peer.checkouts[reference]["amount_pence"] == 15000
    assert peer.checkouts[reference]["webhook_url"] == f"{verity}/billing/webhooks/http"
    page = requests.get(url, timeout=10)
    assert "Pay &pound;150.00" in page.text
    paid = requests.post(url, allow_redirects=False, timeout=30)  # the patient presses Pay
    assert paid.status_code == 303 and paid.headers["Location"].startswith(f"{verity}/billing/checkouts/")
    assert peer.deliveries[-1].status == 200
    assert state(app, invoice_id) == (PAID, 1, ["paid"])
    with app.app_context():
        payment = db.session.scalars(sa.select(Payment)).one()
        assert (payment.method, payment.provider, payment.amount_pence) == ("online", "http", 15000)
        assert services.reconcile() == []


def test_a_replayed_webhook_changes_nothing(app, verity, peer, checkout):
    invoice_id, reference, _ = checkout
    hook = f"{verity}/billing/webhooks/http"
    first = event(reference)
    assert peer.webhook(hook, first).status == 200
    before = state(app, invoice_id)
    again = peer.webhook(hook, first)
    assert again.status == 409 and "already received" in again.body["error"]
    # The same payment under a new event id: the checkout is no longer open.
    other = peer.webhook(hook, {**first, "event_id": "evt_other"})
    assert other.status == 409 and "no longer open" in other.body["error"]
    assert state(app, invoice_id) == before == (PAID, 1, ["paid"])
    assert [r["status"] for r in refusals(app)] == [409, 409]


@pytest.mark.parametrize("bad, status, reason", [
    ({"secret": "not-the-secret"}, 401, "signature does not match"),
    ({"skew": -600}, 401, "more than 5 minutes old"),
    ({"skew": 600}, 401, "from the future"),
])
def test_a_forged_or_stale_webhook_is_refused_and_changes_nothing(app, verity, peer, checkout, bad, status, reason):
    invoice_id, reference, _ = checkout
    before = state(app, invoice_id)
    if "skew" in bad:  # stamped when it is sent, not when the tests were collected
        bad = {"timestamp": int(time.time()) + bad["skew"]}
    answer = peer.webhook(f"{verity}/billing/webhooks/http", event(reference), **bad)
    assert answer.status == status and reason in answer.body["error"]
    assert state(app, invoice_id) == before == (OPEN, 0, [CHECKOUT_OPEN])
    assert refusals(app)[-1]["status"] == status and reason in refusals(app)[-1]["reason"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookEvent)) == 0, "no event id is spent"


def test_an_unsigned_webhook_is_refused(app, verity, checkout):
    invoice_id, reference, _ = checkout
    answer = requests.post(f"{verity}/billing/webhooks/http", json=event(reference), timeout=10)
    assert answer.status_code == 401 and "headers are required" in answer.json()["error"]
    assert state(app, invoice_id) == (OPEN, 0, [CHECKOUT_OPEN])


@pytest.mark.parametrize("changes, status, reason", [
    ({"reference": "cs_unknown"}, 404, "no checkout with this reference"),
    ({"amount_pence": 1}, 409, "is not the checkout's"),
    ({"amount_pence": 150000}, 409, "is not the checkout's"),
    ({"currency": "EUR"}, 409, "currency is EUR"),
    ({"amount_pence": -15000}, 400, "positive whole number"),
    ({"amount_pence": 150.0}, 400, "positive whole number"),
    ({"type": "checkout.refunded"}, 400, "type must be"),
    ({"event_id": ""}, 400, "event_id is required"),
])
def test_a_webhook_that_does_not_fit_the_checkout_is_refused_with_its_reason(app, verity, peer, checkout, changes,
                                                                            status, reason):
    invoice_id, reference, _ = checkout
    answer = peer.webhook(f"{verity}/billing/webhooks/http", event(reference, **changes))
    assert answer.status == status and reason in answer.body["error"]
    assert state(app, invoice_id) == (OPEN, 0, [CHECKOUT_OPEN])
    assert refusals(app)[-1]["status"] == status
    # The genuine event still goes through afterwards.
    assert peer.webhook(f"{verity}/billing/webhooks/http", event(reference)).status == 200
    assert state(app, invoice_id) == (PAID, 1, ["paid"])


def test_a_malformed_body_is_a_400(app, verity, peer, checkout):
    invoice_id, _, _ = checkout
    answer = peer.webhook(f"{verity}/billing/webhooks/http", {}, body=b"not json")
    assert answer.status == 400 and "not JSON" in answer.body["error"]
    assert state(app, invoice_id) == (OPEN, 0, [CHECKOUT_OPEN])


def test_a_payment_taken_at_the_desk_closes_the_checkout_so_a_late_webhook_is_refused(app, verity, peer, personas,
                                                                                     checkout):
    invoice_id, reference, _ = checkout
    with app.app_context():
        services.record_payment(db.session.get(Invoice, invoice_id), 15000, method="card_terminal",
                                reference="T-77", by=db.session.get(User, personas["reception"].user_id))
    answer = peer.webhook(f"{verity}/billing/webhooks/http", event(reference))
    assert answer.status == 409 and "no longer open" in answer.body["error"]
    assert state(app, invoice_id) == (PAID, 1, ["superseded"])
