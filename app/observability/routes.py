"""`/metrics` for Prometheus and `/readyz` for load balancers (`/healthz`, liveness, is in core)."""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, abort, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from app import policy
from app.observability import metrics as process_metrics
from app.observability import services as observability

bp = Blueprint("observability", __name__)
log = logging.getLogger(__name__)


def _bearer_token_matches(expected: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


@bp.route("/metrics")
@policy.public  # a scraper holds no session: VERITY_METRICS_TOKEN (a bearer token) authenticates it
def metrics():
    """404 unless VERITY_METRICS_TOKEN is set (metrics off); 401 without that token."""
    expected = current_app.config.get("METRICS_TOKEN")
    if not expected:
        abort(404)
    if not _bearer_token_matches(expected):
        log.warning("metrics scrape refused: no or wrong bearer token")
        return current_app.response_class("A bearer token is needed.\n", status=401, mimetype="text/plain",
                                          headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body = process_metrics.exposition(current_app.config.get("PROMETHEUS_MULTIPROC_DIR"))
    return current_app.response_class(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST})


@bp.route("/readyz")
@policy.public
def readyz():
    """Ready to serve: the database answers, Redis answers (when configured), a worker beat recently."""
    result = observability.readiness(current_app.config)
    return jsonify(result.as_dict()), 200 if result.ok else 503
