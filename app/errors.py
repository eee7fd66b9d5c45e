"""Error pages in the design system; a plain JSON body for API and htmx callers."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

MESSAGES = {
    400: ("Something in that request was not right", "Go back, check what you entered and try again."),
    401: ("You need to sign in", "Sign in to continue."),
    403: ("You do not have access to this page", "If you think you should, ask the clinic to check your account."),
    404: ("Page not found",
          "If you typed the web address, check it is correct. If you pasted it, check you copied all of it."),
    405: ("That action is not available here", "Go back and use the buttons on the page."),
    413: ("That is too large to send", "Send something smaller, or split it into parts."),
    429: ("Too many attempts", "Wait a few minutes, then try again."),
    500: ("Sorry, there is a problem with the service", "Try again later. What you entered before this has been kept."),
}


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/fhir/")) or request.accept_mimetypes.best == "application/json"


def render_error(status: int, title: str | None = None, body: str | None = None):
    default_title, default_body = MESSAGES.get(status, MESSAGES[500])
    title, body = title or default_title, body or default_body
    if wants_json():
        return jsonify(error=title, detail=body, status=status), status
    template = "errors/fragment.html" if request.headers.get("HX-Request") else "errors/page.html"
    return render_template(template, status=status, title=title, body=body), status


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError):
        from app.audit import services as audit

        audit.record("security.csrf_rejected", detail={"path": request.path, "reason": error.description})
        return render_error(400, "Your form expired or was sent from somewhere else",
                            "Go back, reload the page and send the form again. Nothing was changed.")

    @app.errorhandler(429)
    def _throttled(error: HTTPException):
        from app.audit import services as audit

        audit.record("security.throttled", detail={"path": request.path, "limit": str(error.description)})
        return render_error(429, "Too many attempts",
                            "For your security, sign-in is paused after several wrong attempts. "
                            "Wait 15 minutes, then try again.")

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        return render_error(error.code)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error", extra={"path": request.path})
        return render_error(500)
