"""Who may reach the operational endpoints: `/readyz` answers everyone (load balancers hold no session);
`/metrics` wants the bearer token VERITY_METRICS_TOKEN, not a session, and answers 404 while none is set
(as in these tests). With a token, tests/test_observability.py checks the 401 and the 200."""

from __future__ import annotations

from tests.access import EVERYONE

EXPECTED: dict[str, tuple[str, dict[str, str], dict[str, int]]] = {
    # No worker has beaten in a test database, so readiness says 503, to everyone alike.
    "observability.readyz": ("GET", {}, {p: 503 for p in EVERYONE}),
    "observability.metrics": ("GET", {}, {p: 404 for p in EVERYONE}),
}
