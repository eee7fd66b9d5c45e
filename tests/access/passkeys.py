"""Who may reach the passkey routes (app/auth/passkey_routes.py): staff only; patients have no passkeys.

The personas' second factor is fresh, so the step-up rules let staff through to the view itself: removing a
passkey that does not exist is a 404, asking for sign-in options without saying what for a 400. What each
ceremony does (and someone else's passkey) is tested in tests/test_passkeys.py.
"""

from __future__ import annotations

from tests.access import PATIENTS, STAFF, table

NO_SUCH_PASSKEY = 999_999

EXPECTED: dict[str, tuple[str, dict, dict[str, int]]] = {
    "auth.security": ("GET", {}, table(ok=STAFF, forbidden=PATIENTS)),
    "auth.passkey_register_options": ("POST", {}, table(ok=STAFF, forbidden=PATIENTS)),
    # Posted as a form (no script to send the JSON): back to the security page with an explanation.
    "auth.passkey_register": ("POST", {}, table(redirect=STAFF, forbidden=PATIENTS)),
    "auth.passkey_remove": ("POST", {"passkey_id": lambda app, personas: NO_SUCH_PASSKEY},
                            table(not_found=STAFF, forbidden=PATIENTS)),
    "auth.passkey_options": ("POST", {}, table(bad_request=STAFF, forbidden=PATIENTS)),
}
