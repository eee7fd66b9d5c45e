"""Response headers every page carries: a strict CSP with no inline script or style, and friends."""

from __future__ import annotations

from flask import Flask, Response, request

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "font-src 'self'",
    "connect-src 'self'",
    "media-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

# Camera and microphone stay off except on pages that declare they need them (the call pages).
PERMISSIONS_DEFAULT = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), display-capture=()"
PERMISSIONS_MEDIA = "camera=(self), microphone=(self), geolocation=(), payment=(), usb=(), display-capture=(self)"


def init_app(app: Flask) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        if "frame-ancestors" not in headers["Content-Security-Policy"]:
            # A route's own, stricter CSP (a file download's) may leave it out, and frame-ancestors does not
            # fall back to default-src: a response is never framed unless its route says by whom.
            headers["Content-Security-Policy"] += "; frame-ancestors 'none'"
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", PERMISSIONS_DEFAULT)
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        if request.endpoint != "static" and "Cache-Control" not in headers:
            # Pages hold personal data: never keep them in shared or back-button caches.
            headers["Cache-Control"] = "no-store"
        return response
