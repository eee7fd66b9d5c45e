"""Fixtures shared by the whole suite.

Every database test runs twice: on SQLite and on PostgreSQL (TEST_POSTGRES_URL). The schema is
made by the migrations once per engine per session into a template; each test gets a fresh
copy (a file copy on SQLite, CREATE DATABASE ... TEMPLATE on PostgreSQL).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.auth.models import Role, User

PG_URL = os.environ.get("TEST_POSTGRES_URL", "")
SKIP_PG = os.environ.get("VERITY_SKIP_POSTGRES") == "1"
TEST_PASSWORD = "correct-horse-battery"
FAST_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024, "ARGON2_PARALLELISM": 1}


def engines() -> list[str]:
    return ["sqlite"] if SKIP_PG else ["sqlite", "postgresql"]


def config_for(database_url: str, instance_dir: Path, **extra) -> dict:
    return {"ENV": "test", "SQLALCHEMY_DATABASE_URI": database_url, "INSTANCE_DIR": str(instance_dir),
            **FAST_ARGON2, **extra}


def migrate(database_url: str, instance_dir: Path) -> None:
    from flask_migrate import upgrade

    app = create_app(config_for(database_url, instance_dir))
    with app.app_context():
        upgrade(revision="heads")
        from app.extensions import db

        db.engine.dispose()


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    if SKIP_PG:
        pytest.skip("PostgreSQL skipped by VERITY_SKIP_POSTGRES=1")
    if not PG_URL:
        pytest.fail("TEST_POSTGRES_URL is not set: database tests run on PostgreSQL as well as SQLite")
    engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at TEST_POSTGRES_URL is unreachable ({exc.orig}); start it or set "
                    "VERITY_SKIP_POSTGRES=1 to run the SQLite half only")
    yield engine
    engine.dispose()


def _pg_url(database: str) -> str:
    return sa.make_url(PG_URL).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def templates(tmp_path_factory) -> dict[str, str]:
    """Migrated template databases, made lazily once per engine."""
    return {}


@pytest.fixture(params=engines())
def database_url(request, tmp_path, tmp_path_factory, templates) -> Iterator[str]:
    engine_name = request.param
    if engine_name == "sqlite":
        if "sqlite" not in templates:
            folder = tmp_path_factory.mktemp("sqlite-template")
            path = folder / "template.db"
            migrate(f"sqlite:///{path}", folder)
            templates["sqlite"] = str(path)
        target = tmp_path / "verity.db"
        shutil.copyfile(templates["sqlite"], target)
        yield f"sqlite:///{target}"
        return
    admin: sa.Engine = request.getfixturevalue("pg_admin")
    if "postgresql" not in templates:
        name = f"verity_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        migrate(_pg_url(name), tmp_path_factory.mktemp("pg-template"))
        templates["postgresql"] = name
        request.addfinalizer(lambda: _drop(admin, name))
    name = f"verity_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{templates["postgresql"]}"'))
    try:
        yield _pg_url(name)
    finally:
        _drop(admin, name)


def _drop(admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def app_config() -> dict:
    """Override in a test module to change configuration for its app."""
    return {}


@pytest.fixture
def app(database_url, tmp_path, app_config) -> Iterator[Flask]:
    app = create_app(config_for(database_url, tmp_path, **app_config))
    yield app
    with app.app_context():
        from app.extensions import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def ctx(app) -> Iterator[Flask]:
    with app.app_context():
        yield app


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


def csrf_from(html: str) -> str:
    match = re.search(r'"X-CSRFToken": "([^"]+)"', html) or re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


# Personas -----------------------------------------------------------------------------------

@dataclass
class Persona:
    name: str
    user_id: int | None
    role: Role | None
    email: str | None = None
    totp_secret: str | None = None
    patient_id: int | None = None


class World:
    """Builds people at any state in one call, through the services (never raw inserts).

    Each call runs in an app context of its own and leaves none behind: a test client request
    made inside an app context would share it (and `g`, and the db session) with the test.
    """

    def __init__(self, app: Flask):
        self.app = app
        self._pharmacies: dict[str, int] = {}

    def pharmacy(self, key: str = "main") -> int:
        with self.app.app_context():
            return self._pharmacy(key)

    def staff(self, role: Role, name: str | None = None, *, totp: bool = True, pharmacy: str = "main") -> Persona:
        with self.app.app_context():
            return self._staff(role, name, totp=totp, pharmacy=pharmacy)

    def patient(self, name: str = "patient", *, clinician: Persona | None = None, born=None) -> Persona:
        with self.app.app_context():
            return self._patient(name, clinician=clinician, born=born)

    def _pharmacy(self, key: str = "main") -> int:
        from app.pharmacy import services as pharmacies

        if key not in self._pharmacies:
            number = str(9000000 + len(self._pharmacies) + 1)
            self._pharmacies[key] = pharmacies.create(name=f"Pharmacy {key}", gphc_number=number,
                                                      address="1 High Street, Leeds LS1 1AA").id
        return self._pharmacies[key]

    def _staff(self, role: Role, name: str | None, *, totp: bool, pharmacy: str) -> Persona:
        from app import crypto
        from app.auth import services as accounts
        from app.database import transaction, utcnow

        label = name or role.value
        email = f"{label}.{uuid.uuid4().hex[:6]}@staff.example.com"
        pharmacy_id = self._pharmacy(pharmacy) if role is Role.PHARMACIST else None
        user = accounts.create_user(email=email, password=TEST_PASSWORD, full_name=f"{label.title()} Person",
                                    role=role, pharmacy_id=pharmacy_id)
        secret = None
        if totp:
            secret = pyotp.random_base32()
            with transaction():
                user.totp_secret_enc = crypto.encrypt(secret.encode(), accounts.TOTP_PURPOSE)
                user.totp_confirmed_at = utcnow()
        return Persona(label, user.id, role, email, secret)

    def _patient(self, name: str, *, clinician: Persona | None, born) -> Persona:
        import datetime as dt

        from app.auth.models import User
        from app.extensions import db
        from app.patients import services as patients

        email = f"{name}.{uuid.uuid4().hex[:6]}@patients.example.com"
        patient = patients.register(email=email, password=TEST_PASSWORD, full_name=f"{name.title()} Example",
                                    date_of_birth=born or dt.date(1980, 5, 17))
        if clinician is not None:
            patients.assign_clinician(patient, db.session.get(User, clinician.user_id))
        return Persona(name, patient.user_id, Role.PATIENT, email, patient_id=patient.id)


@pytest.fixture
def world(app) -> World:
    return World(app)


@pytest.fixture
def personas(world) -> dict[str, Persona]:
    """The cast of the access tests (healthchecks' alice/bob/charlie, for a clinic)."""
    clinician = world.staff(Role.CLINICIAN, "clinician")
    other_clinician = world.staff(Role.CLINICIAN, "otherclinician")
    cast = {
        "anonymous": Persona("anonymous", None, None),
        "patient": world.patient("alice", clinician=clinician),
        "other_patient": world.patient("bob", clinician=other_clinician),
        "clinician": clinician,
        "other_clinician": other_clinician,
        "reception": world.staff(Role.RECEPTION),
        "pharmacist": world.staff(Role.PHARMACIST, pharmacy="main"),
        "other_pharmacist": world.staff(Role.PHARMACIST, "otherpharmacist", pharmacy="other"),
        "admin": world.staff(Role.ADMIN),
    }
    return cast


def sign_in_as(client: FlaskClient, persona: Persona, *, second_factor_age: float = 0.0) -> None:
    """Put a signed-in session on the client, as the login flow leaves it.

    The login and second-factor flows themselves are tested through HTTP in test_auth.py; the
    access tests only need the resulting session.
    """
    if persona.user_id is None:
        return
    from app.auth import sessions
    from app.auth.session_routes import TOKEN_KEY
    from app.extensions import db

    with client.application.app_context():
        user = db.session.get(User, persona.user_id)
        session_id = user.get_id()
        token = sessions.start(user)  # the server-side session the login flow would have made
    now = time.time()
    with client.session_transaction() as session:
        session.clear()
        session["_user_id"] = session_id
        session["_fresh"] = True
        session[TOKEN_KEY] = token
        if persona.totp_secret:
            session["mfa_at"] = now - second_factor_age


def totp_now(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def audit_actions(app: Flask) -> list[str]:
    from app.audit.models import AuditEvent
    from app.extensions import db

    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq)))


def pytest_collection_modifyitems(config, items):
    """Run the end-to-end layer last: the fast layers fail first, and the browser session (whose
    sync API keeps an event loop running on the main thread) starts only when they are done."""
    items.sort(key=lambda item: "tests/e2e/" in item.nodeid.replace("\\", "/"))
