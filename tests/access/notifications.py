"""Who may reach each notifications route: the list, the badge and the preferences (everyone signed in, their
own only), the front desk's failed deliveries, the patient's timeline.

The objects (a notice for the persona "patient", an alert for a dead email) are made once per app through the
services and cached in `app.extensions`.
"""

from __future__ import annotations

from tests.access import (
    ADMIN,
    CLIN,
    OTHER_CLIN,
    OTHER_PATIENT,
    OTHER_PHARM,
    PATIENT,
    PATIENTS,
    PHARM,
    RECEP,
    SIGNED_IN,
    STAFF,
    table,
)

FRONT_DESK = (RECEP, ADMIN)
NOT_FRONT_DESK = (*PATIENTS, CLIN, OTHER_CLIN, PHARM, OTHER_PHARM)


def _objects(app, personas) -> dict[str, int]:
    cache = app.extensions.setdefault("access_notifications", {})
    if cache:
        return cache
    import sqlalchemy as sa

    from app.database import transaction
    from app.notifications import services as notifications
    from app.outbox.models import DEAD, OutboxMessage

    with app.app_context():
        notice = notifications.notify(personas["patient"].user_id, "prescription.issued", key="access:notice",
                                      link="/timeline")
        with transaction() as session:  # the mail server refused it every time: the outbox gave up
            session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == notice.email_message_id)
                            .values(status=DEAD, attempts=12))
        notifications.scan_dead_letters()
        alert = notifications.open_alerts()[0].alert
        cache.update(notice=notice.id, alert=alert.id)
    return cache


def _get(key):
    return lambda app, personas: _objects(app, personas)[key]


EXPECTED = {
    "notifications.index": ("GET", {}, table(ok=SIGNED_IN)),
    "notifications.badge": ("GET", {}, table(ok=SIGNED_IN)),
    "notifications.preferences": ("GET", {}, table(ok=SIGNED_IN)),
    # Opening a notice marks it read and follows its link; anyone else's is refused (and audited).
    "notifications.open_one": ("GET", {"notification_id": _get("notice")},
                               table(redirect=(PATIENT,), forbidden=(OTHER_PATIENT, *STAFF))),
    "notifications.mark_all_read": ("POST", {}, table(bad_request=SIGNED_IN)),
    "notifications.delivery_problems": ("GET", {}, table(ok=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "notifications.delivery_banner": ("GET", {}, table(ok=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "notifications.resend": ("POST", {"alert_id": _get("alert")},
                             table(bad_request=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "notifications.dismiss": ("POST", {"alert_id": _get("alert")},
                              table(bad_request=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "notifications.timeline": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
}
