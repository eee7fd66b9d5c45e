"""Verity: the application factory."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask, g, request
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix

from app import crypto, errors, formdata, observability, security, storage
from app.config import CONFIGS
from app.extensions import csrf, db, limiter, login_manager, migrate


class ConfigurationError(RuntimeError):
    pass


def create_app(config: str | dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("VERITY_INSTANCE_DIR") or None, instance_relative_config=False)
    env = os.environ.get("VERITY_ENV", "development")
    overrides: dict[str, Any] = {}
    if isinstance(config, dict):
        overrides = config
        env = overrides.pop("ENV", "test")
    elif isinstance(config, str):
        env = config
    app.config.from_object(CONFIGS[env])
    app.config.update(overrides)
    _check_secrets(app)
    storage.check_config(app.config)  # VERITY_STORAGE and its settings, before anything is stored

    if app.config["PROXY_HOPS"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_HOPS"], x_proto=app.config["PROXY_HOPS"],
                                x_host=app.config["PROXY_HOPS"])
    observability.init_app(app)  # logging first; its request hooks before any other hook can answer

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations"))
    csrf.init_app(app)
    formdata.install()  # forms read a JSON body as a form post, never crash on its shape
    app.request_class = formdata.Request  # multipart parts without a name are dropped (formdata.py)
    limiter.init_app(app)
    login_manager.init_app(app)
    _configure_login(app)
    security.init_app(app)
    errors.init_app(app)

    with app.app_context():
        from app.database import configure_engine

        configure_engine(db.engine)

    _register_blueprints(app)
    _register_cli(app)
    _register_template_helpers(app)
    _bind_request_context(app)

    from app import policy

    policy.check_every_view_has_a_rule(app)

    if not app.config["TESTING"] and not os.environ.get("FLASK_RUN_FROM_CLI"):
        # Served by a WSGI server (gunicorn): refuse to serve demo accounts outside demo mode.
        from app import demo

        with app.app_context():
            demo.refuse_unsafe_start(app)
    return app


def _check_secrets(app: Flask) -> None:
    if not app.config.get("SECRET_KEY"):
        raise ConfigurationError("SECRET_KEY is not set. `make run` writes one to instance/verity.env; "
                                 "in production set it in the environment.")
    if not app.config.get("DATA_KEY"):
        raise ConfigurationError("VERITY_DATA_KEY (32 bytes, hex) is not set: it encrypts secrets at rest.")
    app.extensions["verity_data_key"] = crypto.parse_key(app.config["DATA_KEY"])


def _configure_login(app: Flask) -> None:
    from app.auth import services as accounts

    login_manager.login_view = "auth.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    login_manager.user_loader(accounts.load_session_user)

    @login_manager.unauthorized_handler
    def _unauthorized():
        from flask import flash, redirect, url_for

        from app import policy
        from app.errors import render_error, wants_json

        if wants_json():
            return render_error(401)
        target = url_for("auth.login", next=policy.here() if request.method == "GET" else None)
        if request.headers.get("HX-Request"):
            response = app.response_class(status=401)
            response.headers["HX-Redirect"] = target
            return response
        flash(login_manager.login_message, login_manager.login_message_category)
        return redirect(target)


def _register_blueprints(app: Flask) -> None:
    import importlib

    domains = ("core", "auth", "patients", "consent", "intake", "documents", "identity", "records", "scheduling",
               "admin", "audit", "prescribing", "consult", "pharmacy", "notifications", "messaging", "outcomes",
               "billing", "observability")
    for domain in domains:
        app.register_blueprint(importlib.import_module(f"app.{domain}.routes").bp)


def _register_template_helpers(app: Flask) -> None:
    from app.auth.models import Role

    menus = {
        Role.PATIENT: [("patients.dashboard", "Home"), ("scheduling.my_appointments", "Appointments"),
                       ("prescribing.my_prescriptions", "Prescriptions"), ("pharmacy.my_pharmacy", "Pharmacy"),
                       ("outcomes.mine", "Progress"), ("messaging.my_threads", "Messages"),
                       ("notifications.timeline", "Timeline"), ("documents.index", "Documents"),
                       ("billing.mine", "Payments")],
        Role.CLINICIAN: [("patients.staff_home", "Patients"), ("scheduling.board", "Appointments"),
                         ("consult.waiting", "Waiting room"), ("messaging.inbox", "Messages"),
                         ("intake.reviews", "Intake reviews"), ("prescribing.mdt_queue", "MDT"),
                         ("prescribing.repeat_queue", "Repeat requests"), ("pharmacy.alerts", "Pharmacy alerts"),
                         ("outcomes.overdue", "Outcomes due"), ("outcomes.clinic_summary", "Outcomes"),
                         ("prescribing.cd_log", "CD log"), ("identity.reviews", "Identity checks"),
                         ("patients.onboarding_board", "Onboarding")],
        Role.RECEPTION: [("patients.staff_home", "Patients"), ("scheduling.board", "Appointments"),
                         ("consult.waiting", "Waiting room"), ("messaging.inbox", "Messages"),
                         ("pharmacy.pipeline_board", "Orders"), ("outcomes.overdue", "Outcomes due"),
                         ("scheduling.availability", "Availability"), ("identity.reviews", "Identity checks"),
                         ("patients.onboarding_board", "Onboarding"), ("records.requests", "GP records"),
                         ("billing.desk", "Payments")],
        Role.PHARMACIST: [("pharmacy.queue", "Prescriptions"), ("pharmacy.inventory_page", "Stock"),
                          ("messaging.inbox", "Queries")],
        Role.ADMIN: [("patients.staff_home", "Patients"), ("scheduling.board", "Appointments"),
                     ("consult.waiting", "Waiting room"), ("messaging.inbox", "Messages"),
                     ("pharmacy.pipeline_board", "Orders"), ("pharmacy.admin_list", "Pharmacies"),
                     ("scheduling.availability", "Availability"), ("identity.reviews", "Identity checks"),
                     ("patients.onboarding_board", "Onboarding"), ("prescribing.formulary_index", "Formulary"),
                     ("prescribing.prescribers_index", "Prescribers"), ("admin.users", "Staff"),
                     ("consent.manage", "Consents"), ("intake.questionnaires", "Questionnaires"),
                     ("outcomes.clinic_summary", "Outcomes"), ("outcomes.instruments_index", "Instruments"),
                     ("messaging.saved_responses", "Saved replies"),
                     ("notifications.delivery_problems", "Delivery problems"), ("audit.index", "Audit trail"),
                     ("billing.desk", "Payments"), ("billing.prices", "Prices"), ("billing.reports_page", "Takings")],
    }

    @app.context_processor
    def _navigation() -> dict[str, Any]:
        from app import policy

        def navigation_for(user) -> list[tuple[str, str]]:
            if policy.needs_second_factor(user) and not policy.second_factor_passed():
                return []
            return menus.get(user.role, [])

        return {"navigation_for": navigation_for}


def _register_cli(app: Flask) -> None:
    from app.cli import register

    register(app)


def _bind_request_context(app: Flask) -> None:
    from app.audit import context as audit_context

    @app.before_request
    def _bind_actor() -> Any:
        from app.auth import session_routes

        # First, before anything loads the user: a cookie whose server-side session has ended signs nobody in.
        ended = session_routes.enforce()
        g._audit_token = audit_context.bind(_actor_now())
        return ended

    @app.teardown_request
    def _unbind_actor(_exc: BaseException | None) -> None:
        token = g.pop("_audit_token", None)
        if token is not None:
            audit_context.reset(token)


def _actor_now():
    from app.audit.context import Actor

    authenticated = current_user.is_authenticated
    return Actor(
        user_id=current_user.id if authenticated else None,
        role=current_user.role.value if authenticated else None,
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
    )


logging.getLogger("app").setLevel(logging.INFO)
