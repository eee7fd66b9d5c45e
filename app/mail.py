"""Email: rendered when the event happens, queued in the outbox, sent by the worker.

Bodies never carry clinical content or personal details: they say there is something new and
link to the portal. Transport: SMTP when MAIL_SERVER is set, otherwise one .eml file per
message under instance/mail/ (the embedded default, so `make run` needs no mail server).
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from flask import current_app, render_template

from app.outbox import services as outbox
from app.outbox.models import OutboxMessage


def queue(to: str, subject: str, template: str, key: str, **context: Any) -> OutboxMessage:
    """Render `email/<template>.txt` and `.html` and queue them under idempotency key `key`."""
    context.setdefault("base_url", current_app.config["BASE_URL"].rstrip("/"))
    context.setdefault("clinic_name", current_app.config["CLINIC_NAME"])
    text = render_template(f"email/{template}.txt", **context)
    html = render_template(f"email/{template}.html", subject=subject, **context)
    return outbox.enqueue("email", key, {"to": to, "subject": subject, "text": text, "html": html})


def build(message: OutboxMessage, payload: dict[str, Any]) -> EmailMessage:
    email = EmailMessage()
    email["From"] = current_app.config["MAIL_FROM"]
    email["To"] = payload["to"]
    email["Subject"] = payload["subject"]
    # A stable Message-ID from the idempotency key lets a receiving system drop a resend.
    email["Message-ID"] = make_msgid(idstring=message.idempotency_key.replace(":", "."), domain="verity.invalid")
    email.set_content(payload["text"])
    email.add_alternative(payload["html"], subtype="html")
    return email


@outbox.handler("email")
def _deliver(message: OutboxMessage, payload: dict[str, Any]) -> None:
    email = build(message, payload)
    config = current_app.config
    if not config.get("MAIL_SERVER"):
        folder = Path(config["INSTANCE_DIR"]) / "mail"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{message.id:08d}.eml").write_bytes(bytes(email))
        return
    with smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=10) as smtp:
        if config.get("MAIL_USE_TLS"):
            smtp.starttls()
        if config.get("MAIL_USERNAME"):
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"] or "")
        smtp.send_message(email)
