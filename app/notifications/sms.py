"""SMS: an adapter interface, a log-only default, and the outbox handler that calls the adapter.

A real gateway is a class with `send(to, text)` that raises on failure (the outbox retries it),
named in the configuration as `SMS_ADAPTER = "package.module:ClassName"`. The default, "log",
sends nothing: it logs that a message would have gone, with the number masked and no text.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Protocol

from flask import current_app

from app.outbox import services as outbox
from app.outbox.models import OutboxMessage

log = logging.getLogger(__name__)

KIND = "sms"


class SmsAdapter(Protocol):
    def send(self, to: str, text: str) -> None:
        """Send `text` to the E.164 number `to`; raise to have the outbox try again later."""


def mask(number: str) -> str:
    """"+447700900123" -> "•••••••••123": enough to tell two numbers apart in a log, not to call one."""
    digits = "".join(ch for ch in number if ch.isdigit())
    return "•" * max(len(digits) - 3, 0) + digits[-3:]


class LogSms:
    """The default: logs that an SMS would have gone (masked number, length only)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, to: str, text: str) -> None:
        log.info("sms not sent (log-only adapter)", extra={"to": mask(to), "chars": len(text)})
        self.sent.append((mask(to), text))


def adapter() -> SmsAdapter:
    """The configured adapter, made once per app."""
    cached = current_app.extensions.get("verity_sms")
    if cached is None:
        name = current_app.config.get("SMS_ADAPTER") or "log"
        if name == "log":
            cached = LogSms()
        else:
            module, _, attribute = name.partition(":")
            cached = getattr(importlib.import_module(module), attribute)()
        current_app.extensions["verity_sms"] = cached
    return cached


@outbox.handler(KIND)
def _deliver(message: OutboxMessage, payload: dict[str, Any]) -> None:
    adapter().send(payload["to"], payload["text"])
