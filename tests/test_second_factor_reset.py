"""Resetting a staff member's lost second factor takes two admins: one asks (with a reason), a different one
approves; the person reset cannot decide it; requests expire after 24 hours; every step is audited; after
approval the person's authenticator, recovery codes and passkeys are gone, their sessions have ended, and
they set up a second factor again at their next sign-in."""

from __future__ import annotations

import datetime as dt
import os
import re

import pyotp
import pytest
import sqlalchemy as sa

from app.auth import models
from app.auth import services as accounts
from app.auth.models import RecoveryCode, Role, SecondFactorReset, User
from app.database import utcnow
from app.extensions import db
from tests.conftest import TEST_PASSWORD, audit_actions, csrf_from, sign_in_as

REASON = "Lost phone and recovery codes; identity checked on a video call"


@pytest.fixture
def cast(app, world, personas):
    """The clinician with an authenticator and recovery codes (enrolled through the services), and three admins."""
    with app.app_context():
        clinician = db.session.get(User, personas["clinician"].user_id)
        clinician.totp_confirmed_at = None
        clinician.totp_secret_enc = None
        db.session.commit()
        secret = accounts.begin_totp_enrolment(clinician)
        assert accounts.confirm_totp_enrolment(clinician, pyotp.TOTP(secret).now())
    return {"clinician": personas["clinician"], "asker": personas["admin"],
            "approver": world.staff(Role.ADMIN, "approver"), "other_admin": world.staff(Role.ADMIN, "otheradmin")}


def admin_client(app, persona, *, second_factor_age: float = 0.0):
    client = app.test_client()
    sign_in_as(client, persona, second_factor_age=second_factor_age)
    return client


def ask(client, user_id: int, reason: str = REASON):
    page = client.get(f"/admin/users/{user_id}/second-factor-reset")
    return client.post(f"/admin/users/{user_id}/second-factor-reset",
                       data={"csrf_token": csrf_from(page.get_data(as_text=True)), "reason": reason})


def decide(client, reset_id: int, action: str, note: str = ""):
    page = client.get(f"/admin/second-factor-resets/{reset_id}").get_data(as_text=True)
    return client.post(f"/admin/second-factor-resets/{reset_id}",
                       data={"csrf_token": csrf_from(page), action: "yes", "note": note})


def reset_id_from(response) -> int:
    return int(re.search(r"/admin/second-factor-resets/(\d+)$", response.headers["Location"]).group(1))


def state(app, user_id: int) -> dict:
    with app.app_context():
        user = db.session.get(User, user_id)
        codes = db.session.scalar(sa.select(sa.func.count()).where(RecoveryCode.user_id == user_id))
        return {"has_totp": user.has_totp, "secret": user.totp_secret_enc is not None, "codes": codes}


def status_of(app, reset_id: int) -> str:
    with app.app_context():
        return db.session.get(SecondFactorReset, reset_id).status


def test_two_admins_reset_a_lost_second_factor_and_the_person_enrols_again(app, cast):
    clinician = cast["clinician"]
    at_work = app.test_client()
    sign_in_as(at_work, clinician)
    asker, approver = admin_client(app, cast["asker"]), admin_client(app, cast["approver"])

    asked = ask(asker, clinician.user_id)
    assert asked.status_code == 302
    reset_id = reset_id_from(asked)
    assert state(app, clinician.user_id) == {"has_totp": True, "secret": True, "codes": 10}, "nothing yet"
    assert at_work.get("/staff").status_code == 200
    assert "Waiting for a second admin" in approver.get("/admin/second-factor-resets").get_data(as_text=True)
    assert REASON in approver.get(f"/admin/second-factor-resets/{reset_id}").get_data(as_text=True)

    assert decide(approver, reset_id, "approve").status_code == 302
    assert status_of(app, reset_id) == "approved"
    assert state(app, clinician.user_id) == {"has_totp": False, "secret": False, "codes": 0}
    signed_out = at_work.get("/staff")
    assert signed_out.status_code == 302 and signed_out.headers["Location"] == "/login"
    assert "two-factor authentication was reset" in at_work.get("/login").get_data(as_text=True)

    again = app.test_client()
    token = csrf_from(again.get("/login").get_data(as_text=True))
    signed_in = again.post("/login", data={"csrf_token": token, "email": clinician.email, "password": TEST_PASSWORD})
    assert signed_in.headers["Location"] == "/auth/two-factor/setup", "they must set up a second factor again"
    assert again.get("/staff").headers["Location"] == "/auth/two-factor/setup"

    actions = audit_actions(app)
    assert actions.index("auth.second_factor_reset_requested") < actions.index("auth.second_factor_reset_approved")
    with app.app_context():
        from app.audit.models import AuditEvent

        approved = db.session.scalar(sa.select(AuditEvent)
                                     .where(AuditEvent.action == "auth.second_factor_reset_approved"))
        assert approved.actor_id == cast["approver"].user_id
        assert approved.subject_id == str(clinician.user_id)
        assert '"recovery_codes":10' in approved.detail and '"requested_by":' in approved.detail


def test_the_asking_admin_cannot_approve_their_own_request(app, cast):
    asker = admin_client(app, cast["asker"])
    reset_id = reset_id_from(ask(asker, cast["clinician"].user_id))
    page = asker.get(f"/admin/second-factor-resets/{reset_id}").get_data(as_text=True)
    assert "You asked for this reset, so another admin must decide it." in page
    assert "Approve and reset" not in page
    refused = decide(asker, reset_id, "approve")
    assert refused.status_code == 403
    assert "another admin must decide it" in refused.get_data(as_text=True)
    assert status_of(app, reset_id) == "pending"
    assert state(app, cast["clinician"].user_id)["has_totp"]
    assert audit_actions(app)[-1] == "auth.second_factor_reset_refused"


def test_the_person_being_reset_cannot_decide_it(app, cast):
    target = cast["other_admin"]
    reset_id = reset_id_from(ask(admin_client(app, cast["asker"]), target.user_id))
    themself = admin_client(app, target)
    assert decide(themself, reset_id, "approve").status_code == 403
    assert decide(themself, reset_id, "decline", note="Not needed").status_code == 403
    assert status_of(app, reset_id) == "pending"
    assert decide(admin_client(app, cast["approver"]), reset_id, "approve").status_code == 302
    assert not state(app, target.user_id)["has_totp"]


def test_an_admin_cannot_ask_for_their_own_reset(app, cast):
    asker = admin_client(app, cast["asker"])
    refused = ask(asker, cast["asker"].user_id)
    assert refused.status_code == 400
    assert "You cannot ask for a reset of your own second factor" in refused.get_data(as_text=True)
    assert audit_actions(app)[-1] == "auth.second_factor_reset_refused"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SecondFactorReset)) == 0


def test_a_request_needs_a_reason_and_only_one_waits_at_a_time(app, cast):
    asker = admin_client(app, cast["asker"])
    empty = ask(asker, cast["clinician"].user_id, reason="   ")
    assert empty.status_code == 400 and "Say why the second factor needs resetting" in empty.get_data(as_text=True)
    first = reset_id_from(ask(asker, cast["clinician"].user_id))
    second = ask(admin_client(app, cast["approver"]), cast["clinician"].user_id)
    assert second.status_code == 409
    assert "already waiting for a second admin" in second.get_data(as_text=True)
    with app.app_context():
        assert list(db.session.scalars(sa.select(SecondFactorReset.id))) == [first]


def test_declining_needs_a_note_and_changes_nothing(app, cast):
    reset_id = reset_id_from(ask(admin_client(app, cast["asker"]), cast["clinician"].user_id))
    approver = admin_client(app, cast["approver"])
    bare = decide(approver, reset_id, "decline")
    assert bare.status_code == 400 and "Say why you are declining" in bare.get_data(as_text=True)
    assert decide(approver, reset_id, "decline", note="Could not confirm it was them").status_code == 302
    assert status_of(app, reset_id) == "declined"
    assert state(app, cast["clinician"].user_id) == {"has_totp": True, "secret": True, "codes": 10}
    assert audit_actions(app)[-1] == "auth.second_factor_reset_declined"
    late = decide(admin_client(app, cast["other_admin"]), reset_id, "approve")
    assert late.status_code == 409, "a decided request stays decided"


def test_a_request_expires_after_24_hours(app, cast, monkeypatch):
    reset_id = reset_id_from(ask(admin_client(app, cast["asker"]), cast["clinician"].user_id))
    later = utcnow() + dt.timedelta(hours=24, seconds=1)
    monkeypatch.setattr(accounts, "utcnow", lambda: later)
    approver = admin_client(app, cast["approver"])
    refused = decide(approver, reset_id, "approve")
    assert refused.status_code == 409
    assert "This request expired before anyone decided it" in refused.get_data(as_text=True)
    assert status_of(app, reset_id) == "expired"
    assert state(app, cast["clinician"].user_id)["has_totp"]
    assert "auth.second_factor_reset_expired" in audit_actions(app)
    assert ask(approver, cast["clinician"].user_id).status_code == 302, "a new request can be made"


def test_deciding_needs_a_fresh_second_factor(app, cast):
    reset_id = reset_id_from(ask(admin_client(app, cast["asker"]), cast["clinician"].user_id))
    stale = admin_client(app, cast["approver"], second_factor_age=6 * 60)
    page = stale.get(f"/admin/second-factor-resets/{reset_id}")
    assert page.status_code == 302 and page.headers["Location"].startswith("/auth/step-up")
    token = csrf_from(stale.get("/staff").get_data(as_text=True))
    posted = stale.post(f"/admin/second-factor-resets/{reset_id}", data={"csrf_token": token, "approve": "yes"})
    assert posted.status_code == 302 and posted.headers["Location"].startswith("/auth/step-up")
    assert status_of(app, reset_id) == "pending"


def test_non_admins_cannot_ask_or_decide(app, cast, personas):
    reset_id = reset_id_from(ask(admin_client(app, cast["asker"]), cast["clinician"].user_id))
    reception = admin_client(app, personas["reception"])
    assert reception.get(f"/admin/second-factor-resets/{reset_id}").status_code == 403
    assert reception.get(f"/admin/users/{cast['clinician'].user_id}/second-factor-reset").status_code == 403
    with app.app_context(), pytest.raises(accounts.ResetRefused):
        accounts.approve_second_factor_reset(db.session.get(SecondFactorReset, reset_id),
                                             by=db.session.get(User, personas["reception"].user_id))
    assert status_of(app, reset_id) == "pending"


def test_patients_are_not_reset_here(app, cast, personas):
    assert ask(admin_client(app, cast["asker"]), personas["patient"].user_id).status_code == 404


def test_approval_removes_passkeys_too(app, cast):
    passkey = getattr(models, "Passkey", None)
    if passkey is None:
        pytest.skip("passkeys are not installed in this tree")
    with app.app_context():
        db.session.add(passkey(user_id=cast["clinician"].user_id, credential_id=os.urandom(16), public_key=b"cose",
                               name="Work laptop"))
        db.session.commit()
    reset_id = reset_id_from(ask(admin_client(app, cast["asker"]), cast["clinician"].user_id))
    assert decide(admin_client(app, cast["approver"]), reset_id, "approve").status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(passkey)
                                 .where(passkey.user_id == cast["clinician"].user_id)) == 0
