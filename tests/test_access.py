"""Route x role: every registered route, walked by every persona and an anonymous visitor.

The expectations live in tests/access/ (a module per domain). They must name every endpoint the
app registers, so a new route without a decision there (and without a rule in app.policy,
which the app checks at start-up) fails the suite.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.audit.models import AuditEvent
from app.extensions import db
from tests.access import ANON, EVERYONE, all_expectations, url_of
from tests.conftest import csrf_from, sign_in_as

EXPECTED = all_expectations()


def test_every_route_has_an_expectation(app):
    registered = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert registered == set(EXPECTED), (
        f"routes without an expectation: {sorted(registered - set(EXPECTED))}; "
        f"expectations without a route: {sorted(set(EXPECTED) - registered)}")


@pytest.mark.parametrize("who", EVERYONE)
def test_route_by_role(app, personas, who):
    failures = []
    for endpoint, (method, args, expected) in sorted(EXPECTED.items()):
        client = app.test_client()
        sign_in_as(client, personas[who])
        url = url_of(app, endpoint, args, personas)
        headers = {}
        if method == "POST":
            # Any page of ours carries the session's CSRF token in <body hx-headers>.
            page = "/login" if who == ANON else "/auth/two-factor" if personas[who].totp_secret else "/dashboard"
            headers["X-CSRFToken"] = csrf_from(client.get(page).get_data(as_text=True))
        response = client.open(url, method=method, headers=headers)
        if response.status_code != expected[who]:
            failures.append(f"{method} {url} ({endpoint}) as {who}: {response.status_code}, expected {expected[who]}")
        if expected[who] == 302 and who == ANON and endpoint not in ("core.home",):
            location = response.headers["Location"]
            assert "/login" in location, f"{endpoint} sent anonymous to {location}"
    assert not failures, "\n".join(failures)


def test_refusals_are_audited(app, client, personas):
    sign_in_as(client, personas["other_patient"])
    response = client.get(f"/patients/{personas['patient'].patient_id}")
    assert response.status_code == 403
    assert "You do not have access to this page" in response.get_data(as_text=True)
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert entry.action == "access.denied"
        assert entry.actor_id == personas["other_patient"].user_id
        assert entry.patient_id == personas["patient"].patient_id
        assert entry.subject_type == "patient"


def test_reading_a_record_is_audited(app, client, personas):
    sign_in_as(client, personas["clinician"])
    assert client.get(f"/patients/{personas['patient'].patient_id}").status_code == 200
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert (entry.action, entry.actor_id, entry.patient_id) == (
            "record.read", personas["clinician"].user_id, personas["patient"].patient_id)


def test_staff_without_second_factor_reach_no_staff_page(app, personas):
    client = app.test_client()
    sign_in_as(client, personas["reception"])
    with client.session_transaction() as session:
        session.pop("mfa_at")  # password accepted, code not yet entered
    response = client.get("/staff")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/two-factor")


def test_a_tampered_id_is_a_clear_404(app, client, personas):
    sign_in_as(client, personas["reception"])
    for url in ("/patients/999999", "/patients/abc", "/admin/users/1x"):
        response = client.get(url)
        assert response.status_code == 404
        assert "Page not found" in response.get_data(as_text=True)
