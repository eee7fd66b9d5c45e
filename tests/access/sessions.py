"""Who may reach the routes of server-side sessions and two-admin second-factor resets.

A session of the persona "patient" (for ending one) and a reset request for the clinician (asked for by
the admin) are made once per app through the services and cached in `app.extensions`.
"""

from __future__ import annotations

from tests.access import ADMIN_ONLY, PATIENT, PATIENTS, SIGNED_IN, STAFF, table


def _patient_session(app, personas) -> int:
    cache = app.extensions.setdefault("access_sessions", {})
    if "session" not in cache:
        from app.auth import sessions
        from app.auth.models import User
        from app.extensions import db

        with app.app_context():
            token = sessions.start(db.session.get(User, personas["patient"].user_id), user_agent="Firefox on Linux")
            cache["session"] = sessions.find(token).id
    return cache["session"]


def _reset_request(app, personas) -> int:
    cache = app.extensions.setdefault("access_sessions", {})
    if "reset" not in cache:
        from app.auth import services as accounts
        from app.auth.models import User
        from app.extensions import db

        with app.app_context():
            reset = accounts.request_second_factor_reset(
                db.session.get(User, personas["clinician"].user_id), by=db.session.get(User, personas["admin"].user_id),
                reason="Lost phone; identity checked on a video call")
            cache["reset"] = reset.id
    return cache["reset"]


EXPECTED: dict = {
    # The time-left check and "Stay signed in" work before the second factor too (the dialog is on every
    # signed-in page); without JSON, "Stay signed in" goes back to the page it came from.
    "auth.session_status": ("GET", {}, table(ok=SIGNED_IN)),
    "auth.session_extend": ("POST", {}, table(redirect=SIGNED_IN)),
    "auth.account": ("GET", {}, table(ok=SIGNED_IN)),
    "auth.change_password": ("GET", {}, table(ok=SIGNED_IN)),
    "auth.end_other_sessions": ("POST", {}, table(redirect=SIGNED_IN)),
    "auth.end_session": ("POST", {"session_id": _patient_session},
                         table(redirect=(PATIENT,), forbidden=(*[p for p in PATIENTS if p != PATIENT], *STAFF))),
    "admin.second_factor_resets": ("GET", {}, ADMIN_ONLY),
    "admin.request_second_factor_reset": ("GET", {"user_id": "clinician"}, ADMIN_ONLY),
    "admin.second_factor_reset": ("GET", {"reset_id": _reset_request}, ADMIN_ONLY),
}
