"""Observability: structured logs with request ids, Prometheus metrics, worker heartbeats, readiness.

- logs.py: one JSON object per line (or text for development), each request logged once with its id.
- metrics.py: `/metrics` for Prometheus (request latency, outbox, prescriptions, signaling, workers).
- services.py: the workers' heartbeats and the readiness checks behind `/readyz`.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Call early in the factory: the request hooks must run before any other hook can answer."""
    from app.observability import logs, metrics

    logs.configure(app)
    logs.init_request_logging(app)
    metrics.init_app(app)
