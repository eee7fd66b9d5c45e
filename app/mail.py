"""Email: rendered when the event happens, queued in the outbox, sent by the worker.

Bodies never carry clinical content or personal details: they say there is something new and
link to the portal. Transport: SMTP when MAIL_SERVER is set, otherwise one .eml file per
message under instance/mail/ (the embedded default, so `make run` needs no mail server).
"""

from __future__ import annotations

import base64
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from flask import current_app, render_template

from app.outbox import services as outbox
from app.outbox.models import OutboxMessage


@dataclass(frozen=True)
class Attachment:
    filename: str
    #: e.g. "text/calendar; method=REQUEST"
    content_type: str
    data: bytes


def queue(to: str, subject: str, template: str, key: str, *, attachments: tuple[Attachment, ...] = (),
          **context: Any) -> OutboxMessage:
    """Render `email/<template>.txt` and `.html` and queue them under idempotency key `key`."""
    context.setdefault("base_url", current_app.config["BASE_URL"].rstrip("/"))
    context.setdefault("clinic_name", current_app.config["CLINIC_NAME"])
    text = render_template(f"email/{template}.txt", **context)
    html = render_template(f"email/{template}.html", subject=subject, **context)
    files = [{"filename": a.filename, "content_type": a.content_type, "data": base64.b64encode(a.data).decode()}
             for a in attachments]
    return outbox.enqueue("email", key, {"to": to, "subject": subject, "text": text, "html": html,
                                         "attachments": files})


def build(message: OutboxMessage, payload: dict[str, Any]) -> EmailMessage:
    email = EmailMessage()
    email["From"] = current_app.config["MAIL_FROM"]
    email["To"] = payload["to"]
    email["Subject"] = payload["subject"]
    # A stable Message-ID from the idempotency key lets a receiving system drop a resend.
    email["Message-ID"] = make_msgid(idstring=message.idempotency_key.replace(":", "."), domain="verity.invalid")
    email.set_content(payload["text"])
    email.add_alternative(payload["html"], subtype="html")
    for item in payload.get("attachments", ()):
        maintype, _, rest = item["content_type"].partition("/")
        subtype, _, params = rest.partition(";")
        extra = dict(p.strip().split("=", 1) for p in params.split(";") if "=" in p)
        email.add_attachment(base64.b64decode(item["data"]), maintype=maintype, subtype=subtype.strip(),
                             filename=item["filename"], params=extra)
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
