"""Configuration: one class per environment, every value from an environment variable.

The README's configuration table lists each variable; keep the two in step.
"""

from __future__ import annotations

import os
from pathlib import Path

INSTANCE_DIR = Path(os.environ.get("VERITY_INSTANCE_DIR", Path(__file__).resolve().parent.parent / "instance"))


def _bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY")
    #: 32-byte key (hex or urlsafe base64) for field and file encryption at rest (AES-GCM).
    DATA_KEY = os.environ.get("VERITY_DATA_KEY")
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'verity.db'}")
    # hide_parameters: a database error's message (which is logged) leaves out the statement's values.
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True, "hide_parameters": True}
    REDIS_URL = os.environ.get("REDIS_URL")
    INSTANCE_DIR = str(INSTANCE_DIR)

    DEMO_MODE = _bool("VERITY_DEMO")
    CLINIC_NAME = os.environ.get("VERITY_CLINIC_NAME", "Verity Clinic")
    CLINIC_TIMEZONE = os.environ.get("VERITY_TIMEZONE", "Europe/London")
    #: Absolute base URL used in emails (links back to the portal).
    BASE_URL = os.environ.get("VERITY_BASE_URL", "http://127.0.0.1:5000")
    #: Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted.
    PROXY_HOPS = _int("VERITY_PROXY_HOPS", 0)

    # Sessions (app/auth/sessions.py, kept server-side in user_sessions): idle timeouts per audience in
    # minutes; absolute lifetimes in hours (VERITY_SESSION_ABSOLUTE_HOURS, the older single setting, still
    # sets the staff one); how many seconds before the idle end the page offers "Stay signed in".
    IDLE_TIMEOUT_STAFF = _int("VERITY_IDLE_TIMEOUT_STAFF", 15)
    IDLE_TIMEOUT_PATIENT = _int("VERITY_IDLE_TIMEOUT_PATIENT", 30)
    SESSION_ABSOLUTE_HOURS_STAFF = _int("VERITY_SESSION_ABSOLUTE_HOURS_STAFF",
                                        _int("VERITY_SESSION_ABSOLUTE_HOURS", 12))
    SESSION_ABSOLUTE_HOURS_PATIENT = _int("VERITY_SESSION_ABSOLUTE_HOURS_PATIENT", 24)
    SESSION_WARNING_SECONDS = _int("VERITY_SESSION_WARNING_SECONDS", 120)
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = _bool("VERITY_SECURE_COOKIES")
    SESSION_COOKIE_NAME = "verity_session"
    REMEMBER_COOKIE_DURATION = 0
    #: Minutes for which a second-factor check counts as fresh (step-up for signing and role changes).
    STEP_UP_MINUTES = _int("VERITY_STEP_UP_MINUTES", 5)
    #: Passkeys (WebAuthn, app/auth/passkeys.py): the relying party id (a domain; never an IP address) and the
    #: origins browsers may use, comma-separated. Unset: both from BASE_URL (a loopback address becomes
    #: "localhost", which browsers treat as a secure context).
    WEBAUTHN_RP_ID = os.environ.get("VERITY_WEBAUTHN_RP_ID")
    WEBAUTHN_ORIGINS = os.environ.get("VERITY_WEBAUTHN_ORIGINS")

    # Login throttling (Flask-Limiter syntax).
    LOGIN_LIMIT_PER_ACCOUNT = os.environ.get("VERITY_LOGIN_LIMIT_ACCOUNT", "5 per 15 minutes")
    LOGIN_LIMIT_PER_ADDRESS = os.environ.get("VERITY_LOGIN_LIMIT_ADDRESS", "30 per 15 minutes")
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI") or (
        os.environ["REDIS_URL"] if os.environ.get("REDIS_URL") else "memory://"
    )
    RATELIMIT_HEADERS_ENABLED = True

    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session, which has its own timeouts
    WTF_CSRF_HEADERS = ["X-CSRFToken"]
    MAX_CONTENT_LENGTH = _int("VERITY_MAX_REQUEST_BYTES", 2 * 1024 * 1024)

    # Email: SMTP when MAIL_SERVER is set, otherwise .eml files under instance/mail/.
    MAIL_SERVER = os.environ.get("MAIL_SERVER")
    MAIL_PORT = _int("MAIL_PORT", 25)
    MAIL_USE_TLS = _bool("MAIL_USE_TLS")
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME")
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD")
    MAIL_FROM = os.environ.get("MAIL_FROM", "Verity <no-reply@verity.invalid>")

    # Prescribing (app/prescribing/config.py): the paper FP10PCD is the legal original in England;
    # 0 makes the signed electronic prescription the original where the law allows it.
    PAPER_ORIGINAL = _bool("VERITY_PAPER_ORIGINAL", True)
    #: The prescriber's UK address printed on every prescription (reg. 15).
    CLINIC_ADDRESS = os.environ.get("VERITY_CLINIC_ADDRESS", "Verity Clinic, 1 Example Street, Bristol BS1 6AA")

    # Background worker.
    WORKER_POLL_SECONDS = float(os.environ.get("VERITY_WORKER_POLL_SECONDS", "1.0"))
    # 16 attempts with backoff doubling from 1 s to a cap of an hour ride out an SMTP or webhook outage
    # of several hours before a message is given up on (and shown on the delivery-problems page).
    OUTBOX_MAX_ATTEMPTS = _int("VERITY_OUTBOX_MAX_ATTEMPTS", 16)
    OUTBOX_LEASE_SECONDS = _int("VERITY_OUTBOX_LEASE_SECONDS", 60)

    # Notifications and messages: an SMS gateway as "package.module:Class" ("log" sends nothing and
    # logs a masked number); the largest message with attachments.
    SMS_ADAPTER = os.environ.get("VERITY_SMS_ADAPTER", "log")
    MESSAGING_MAX_REQUEST_BYTES = _int("VERITY_MESSAGING_MAX_REQUEST_BYTES", 20 * 1024 * 1024)

    # Audit protection and backups (app/db_roles.py, app/audit/checkpoints.py, app/backup.py): the PostgreSQL
    # role the app connects as (granted by the migrations and `flask db roles`); how often the worker signs
    # the chain head (0: never), with which key file and into which file (defaults under the instance
    # folder's audit/); where `flask backup` writes; the folder of pg_dump/pg_restore (default: the PATH).
    DB_APP_ROLE = os.environ.get("VERITY_DB_APP_ROLE")
    AUDIT_CHECKPOINT_MINUTES = _int("VERITY_AUDIT_CHECKPOINT_MINUTES", 60)
    AUDIT_CHECKPOINT_KEY = os.environ.get("VERITY_AUDIT_CHECKPOINT_KEY")
    AUDIT_CHECKPOINT_FILE = os.environ.get("VERITY_AUDIT_CHECKPOINT_FILE")
    BACKUP_DIR = os.environ.get("VERITY_BACKUP_DIR")
    PG_BIN = os.environ.get("VERITY_PG_BIN")

    # Document storage (app/storage.py): "local" (the instance folder, or a shared volume mounted there) or
    # "s3" (a bucket of S3 or an S3-compatible server; credentials and region from the standard AWS_* variables).
    STORAGE = os.environ.get("VERITY_STORAGE", "local")
    S3_BUCKET = os.environ.get("VERITY_S3_BUCKET")
    S3_ENDPOINT_URL = os.environ.get("VERITY_S3_ENDPOINT_URL")
    S3_PREFIX = os.environ.get("VERITY_S3_PREFIX", "")

    # Virus scanning of uploads (app/documents/scan.py): clamd's unix socket, or its host and port; unset: no scan.
    # When set, an upload clamd cannot scan is refused ("try again later"), never stored unscanned.
    CLAMD_SOCKET = os.environ.get("VERITY_CLAMD_SOCKET")
    CLAMD_HOST = os.environ.get("VERITY_CLAMD_HOST")
    CLAMD_PORT = _int("VERITY_CLAMD_PORT", 3310)
    CLAMD_TIMEOUT = float(os.environ.get("VERITY_CLAMD_TIMEOUT", "30"))

    # Observability (app/observability): log lines as json or text; the bearer token /metrics wants (unset:
    # /metrics answers 404); prometheus_client's multiprocess directory, shared by the web and signaling
    # processes of a host; a worker's heartbeat interval, and how old the newest may be for /readyz (0: not checked).
    LOG_FORMAT = os.environ.get("VERITY_LOG_FORMAT", "json")
    LOG_LEVEL = os.environ.get("VERITY_LOG_LEVEL", "INFO")
    METRICS_TOKEN = os.environ.get("VERITY_METRICS_TOKEN")
    PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    WORKER_HEARTBEAT_SECONDS = float(os.environ.get("VERITY_WORKER_HEARTBEAT_SECONDS", "10"))
    READY_WORKER_SECONDS = float(os.environ.get("VERITY_READY_WORKER_SECONDS", "60"))

    TESTING = False


# Domain settings whose defaults and meanings live with their domain (app/documents/settings.py,
# app/scheduling/settings.py, app/identity/providers.py): the environment overrides only what it sets.
DOMAIN_SETTINGS = {
    **{name: f"VERITY_{name}" for name in (
        "DOCUMENTS_MAX_BYTES", "DOCUMENTS_CHUNK_BYTES", "DOCUMENTS_MAX_IMAGE_PIXELS", "DOCUMENTS_MAX_IMAGE_SIDE",
        "DOCUMENTS_JPEG_QUALITY", "DOCUMENTS_BLUR_THRESHOLD", "DOCUMENTS_DARK_THRESHOLD",
        "DOCUMENTS_UPLOAD_EXPIRY_HOURS")},
    "SCHEDULING_CONSULTATION_TYPES": "VERITY_CONSULTATION_TYPES",
    "SCHEDULING_PATIENT_CANCEL_HOURS": "VERITY_PATIENT_CANCEL_HOURS",
    "SCHEDULING_PATIENT_NOTICE_MINUTES": "VERITY_PATIENT_NOTICE_MINUTES",
    "SCHEDULING_HORIZON_DAYS": "VERITY_BOOKING_HORIZON_DAYS",
    "SCHEDULING_REMINDER_MINUTES": "VERITY_REMINDER_MINUTES",
    "SCHEDULING_WAITLIST_OFFER_MINUTES": "VERITY_WAITLIST_OFFER_MINUTES",
}
for _key, _variable in DOMAIN_SETTINGS.items():
    if os.environ.get(_variable):
        setattr(Config, _key, os.environ[_variable])


class DevelopmentConfig(Config):
    """`make run`: demo data, local files, SQLite. Secrets fall back to per-instance files."""

    LOG_FORMAT = os.environ.get("VERITY_LOG_FORMAT", "text")


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = _bool("VERITY_SECURE_COOKIES", True)


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = "test-secret-key-not-for-production"  # noqa: S105 (the test configuration's own)
    DATA_KEY = "00" * 32
    RATELIMIT_STORAGE_URI = "memory://"
    MAIL_SERVER = None
    BASE_URL = "http://localhost"
    LOG_FORMAT = None  # pytest captures logging; tests that check our handler ask for one


CONFIGS = {"development": DevelopmentConfig, "production": ProductionConfig, "test": TestConfig}
