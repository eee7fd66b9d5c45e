"""Who may do what. Every view declares its rule with a decorator from this module, and every
object-level question ("may this user open this patient's record?") is answered here.

The app refuses to start if a view has no rule (see `check_every_view_has_a_rule`), and the
route x role test walks every rule with every persona.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask_login import current_user

from app.auth.models import STAFF_ROLES, Role

if TYPE_CHECKING:
    from app.auth.models import User
    from app.patients.models import Patient

F = TypeVar("F", bound=Callable[..., Any])

ALL_ROLES = frozenset(Role)
ATTR = "__verity_rule__"


@dataclass(frozen=True)
class Rule:
    #: None means public: no sign-in needed.
    roles: frozenset[Role] | None
    #: When True, staff (and patients who turned it on) must have passed their second factor.
    second_factor: bool = True
    #: When True, the second factor must be fresh (step-up), e.g. for signing or role changes.
    step_up: bool = False


def _attach(view: F, rule: Rule) -> F:
    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        outcome = enforce(rule)
        if outcome is not None:
            return outcome
        return view(*args, **kwargs)

    setattr(guarded, ATTR, rule)
    return guarded  # type: ignore[return-value]


def public(view: F) -> F:
    return _attach(view, Rule(roles=None, second_factor=False))


def signed_in(*roles: Role, second_factor: bool = True, step_up: bool = False) -> Callable[[F], F]:
    """Allow the given roles (all roles when none are given)."""
    allowed = frozenset(roles) or ALL_ROLES
    return lambda view: _attach(view, Rule(allowed, second_factor, step_up))


def staff(*roles: Role, step_up: bool = False) -> Callable[[F], F]:
    return signed_in(*(roles or tuple(STAFF_ROLES)), step_up=step_up)


def rule_of(view: Callable[..., Any]) -> Rule | None:
    return getattr(view, ATTR, None)


def needs_second_factor(user: User) -> bool:
    return user.is_staff or user.has_totp


def second_factor_passed() -> bool:
    return bool(session.get("mfa_at"))


def second_factor_fresh() -> bool:
    minutes = current_app.config["STEP_UP_MINUTES"]
    return time.time() - float(session.get("mfa_at") or 0) <= minutes * 60


def second_factor_given() -> None:
    """The person has just given their second factor: it counts as passed, and as fresh for step-up."""
    session["mfa_at"] = time.time()


#: Step-up codes a person may get wrong in a window, wherever they type them (step-up page, side panel).
STEP_UP_ATTEMPTS = "5 per 5 minutes"


def attempts_key() -> str:
    """Who a throttled code attempt counts against (Flask-Limiter key): the signed-in person, else the address."""
    return f"second-factor:{current_user.get_id() if current_user.is_authenticated else request.remote_addr}"


def attempt_failed(_response) -> bool:
    """Flask-Limiter's deduct_when: only the attempts a view marked failed (`g.attempt_failed`) count."""
    return bool(g.get("attempt_failed"))


def enforce(rule: Rule) -> Any:
    """None when the request may go on; otherwise the response to send instead."""
    if rule.roles is None:
        return None
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()
    if current_user.role not in rule.roles:
        deny("role", detail={"needs": sorted(r.value for r in rule.roles)})
    if rule.second_factor and needs_second_factor(current_user) and not second_factor_passed():
        if not current_user.has_totp:
            return redirect(url_for("auth.totp_setup"))
        return redirect(url_for("auth.two_factor", next=here()))
    if rule.step_up and not second_factor_fresh():
        come_back = here() if request.method == "GET" else request.referrer
        return redirect(url_for("auth.step_up", next=come_back))
    return None


def here() -> str:
    """This request's path and query, to come back to after signing in (no dangling '?')."""
    return request.full_path.rstrip("?")


def deny(reason: str, *, subject: tuple[str, object] | None = None, patient_id: int | None = None,
         detail: dict[str, Any] | None = None) -> None:
    """Record the refusal in the audit trail, then answer 403."""
    from app.audit import services as audit

    audit.record(
        "access.denied",
        subject=subject,
        patient_id=patient_id,
        detail={"reason": reason, "path": request.path, "method": request.method, **(detail or {})},
    )
    abort(403)


def require(allowed: bool, *, subject: tuple[str, object], patient_id: int | None = None) -> None:
    if not allowed:
        deny("object", subject=subject, patient_id=patient_id)


# Object-level rules -------------------------------------------------------------------------

def can_view_patient(user: User, patient: Patient) -> bool:
    """The patient themself, their clinician, and the front desk. Pharmacists see prescriptions,
    not records; another clinician needs to be made this patient's clinician first."""
    if user.role is Role.PATIENT:
        return patient.user_id == user.id
    if user.role is Role.CLINICIAN:
        return patient.clinician_id == user.id
    return user.role in (Role.RECEPTION, Role.ADMIN)


def can_manage_users(user: User) -> bool:
    return user.role is Role.ADMIN


def check_every_view_has_a_rule(app: Flask, exempt: Iterable[str] = ("static",)) -> None:
    missing = [name for name, view in app.view_functions.items() if name not in exempt and rule_of(view) is None]
    if missing:
        raise RuntimeError(f"views without an access rule in app.policy: {', '.join(sorted(missing))}")
