"""Logs: one JSON object a line in production (text for development), every request logged once.

Each line has time, level, logger and message; inside a request also request_id, method, path and,
when someone is signed in, user_id and role; the request's own line adds status and duration_ms.
Personal data never goes in: code logs ids, not names, emails, dates of birth or NHS numbers; the
path is logged without its query string (searches carry names there), with string URL variables
(guest links, upload ids, public ids: some are capabilities) replaced by their names unless they are
plain words (an action, a carrier); uvicorn's access log and WebSocket handshake lines (the client's
address and the query string) are left out; and the formatter masks anything shaped like an email
address that still slips into a message or an error.

The request id comes from the `X-Request-ID` header when it is a safe token (what nginx's
`$request_id` or a load balancer sends), else a new one; the response carries it back.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any, TextIO

from flask import Flask, Response, g, has_request_context, request
from flask.logging import default_handler
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from app.audit import context as audit_context

REQUEST_ID_HEADER = "X-Request-ID"
#: What a request id from outside may look like: letters, digits and . _ : - (no spaces, quotes, newlines
#: or @), at most 128 characters. Anything else is replaced by our own id.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
#: Health and scrape endpoints are polled every few seconds: their lines are DEBUG, not INFO.
QUIET_ENDPOINTS = frozenset({"core.healthz", "observability.readyz", "observability.metrics"})
#: Our loggers (app.*, signaling.*) log at LOG_LEVEL; everything else at WARNING and above.
OWN_LOGGERS = ("app", "signaling")
_URL_VARIABLE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
#: URL variables shown as they are: numbers, a choice of fixed words, and the static files' paths; a string
#: variable only when it is a plain lowercase word (an action, a carrier), never an id or a token.
_SHOWN_CONVERTERS = frozenset({"int", "float", "any", "path"})
_WORD = re.compile(r"[a-z][a-z_-]{0,31}")

request_log = logging.getLogger("app.request")


def mask(text: str) -> str:
    return EMAIL.sub("[email]", text)


def request_id_from(header: str | None) -> str:
    if header and SAFE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def loggable_path() -> str:
    """The path without its query string; string URL variables other than plain words shown as `<name>`."""
    rule = request.url_rule
    if rule is None or not request.view_args:
        return request.path

    def value(match: re.Match[str]) -> str:
        converter, name = match.group(1) or "default", match.group(2)
        value = request.view_args.get(name)
        if converter in _SHOWN_CONVERTERS or (isinstance(value, str) and _WORD.fullmatch(value)):
            return str(value)
        return f"<{name}>"

    return _URL_VARIABLE.sub(value, rule.rule)


def request_fields() -> dict[str, Any]:
    """What a line says about where it comes from: the request (inside one), and who is acting (as the audit
    trail has them bound for the request or the signaling call: plain ids, so logging never queries)."""
    fields: dict[str, Any] = {}
    if has_request_context():
        fields.update(request_id=g.get("request_id"), method=request.method, path=loggable_path())
    actor = audit_context.current()
    if actor.user_id is not None:
        fields.update(user_id=actor.user_id, role=actor.role)
    return fields


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger with our field names, the request's fields, and email addresses masked."""

    FIRST = ("time", "level", "logger", "message")

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s", timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
                         reserved_attrs=[*RESERVED_ATTRS, "color_message"])  # uvicorn's copy with terminal colours

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        for key, value in request_fields().items():
            log_data.setdefault(key, value)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        ordered = {key: log_data.pop(key) for key in self.FIRST if key in log_data}
        ordered.update(log_data)
        return {key: mask(value) if isinstance(value, str) else value for key, value in ordered.items()}


class QuietWebSockets(logging.Filter):
    """Drop uvicorn's INFO lines about WebSocket handshakes (client address, path with query string) and
    "connection open/closed": signaling logs each call connection itself, without them."""

    NOISE = frozenset({"connection open", "connection closed"})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return "WebSocket" not in str(record.msg) and str(record.msg) not in self.NOISE


class TextFormatter(logging.Formatter):
    """For a developer's terminal: the same facts on one readable line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {**request_fields(), "duration_ms": getattr(record, "duration_ms", None)}
        context = " ".join(f"{key}={fields[key]}" for key in ("duration_ms", "request_id", "user_id", "role")
                           if fields.get(key) is not None)
        return mask(f"{line} [{context}]" if context else line)


def _is_ours(handler: logging.Handler) -> bool:
    return getattr(handler, "verity", False)


def configure(app: Flask, stream: TextIO | None = None) -> None:
    """Send every log record to stderr in LOG_FORMAT (json or text); no LOG_FORMAT (tests) leaves logging alone.

    Idempotent: a second app in the same process replaces our handler rather than adding another.
    """
    chosen = app.config.get("LOG_FORMAT")
    if not chosen:
        return
    if chosen not in ("json", "text"):
        raise ValueError(f"VERITY_LOG_FORMAT is {chosen!r}: use json or text")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if _is_ours(h)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.verity = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    level = str(app.config.get("LOG_LEVEL") or "INFO").upper()
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    logging.getLogger("app").removeHandler(default_handler)  # Flask's own text handler would print twice
    # uvicorn's messages go through our handler; its access log is off (it prints query strings),
    # each request is logged by us instead.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietWebSockets) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(QuietWebSockets())
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False


def init_request_logging(app: Flask) -> None:
    """Register first, so the id exists before any other hook answers and the time covers them all."""
    from app.observability import metrics

    @app.before_request
    def _start_request() -> None:
        g.request_started = time.perf_counter()
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))

    @app.after_request
    def _finish_request(response: Response) -> Response:
        started = g.get("request_started")
        request_id = g.get("request_id") or request_id_from(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        if started is None:
            return response
        seconds = time.perf_counter() - started
        endpoint = request.url_rule.endpoint if request.url_rule is not None else "unmatched"
        metrics.observe_request(endpoint, request.method, response.status_code, seconds)
        path = loggable_path()
        level = logging.DEBUG if endpoint in QUIET_ENDPOINTS else logging.INFO
        request_log.log(level, "%s %s %s", request.method, path, response.status_code,
                        extra={"status": response.status_code, "duration_ms": round(seconds * 1000, 1),
                               "endpoint": endpoint})
        return response
