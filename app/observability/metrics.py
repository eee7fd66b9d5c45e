"""Prometheus metrics at `/metrics` (prometheus_client), for staff scraping with a bearer token.

Two kinds:
- What a process measures itself: request latency (a histogram by endpoint, method and status class,
  never by raw path) and signaling connections (a gauge, counted by the process holding them).
  With several web or signaling processes on a host, set PROMETHEUS_MULTIPROC_DIR to an empty
  directory they share (emptied before they start): prometheus_client's multiprocess mode then sums
  every process's figures, whichever process answers the scrape. Without it, each process reports
  its own (right for the embedded server, where web and signaling are one process).
- What the database knows, read at scrape time so any process gives the same answer: outbox messages
  by status and the age of the oldest pending one, prescriptions per state, and each worker's last
  heartbeat (see services.py).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable, Iterator

from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

#: Seconds. Finer below a quarter of a second, where the pages should be (150 ms p95 is the target).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_SECONDS = Histogram(
    "verity_http_request_duration_seconds", "Time to answer a web request, by Flask endpoint and status class.",
    ("endpoint", "method", "status_class"), buckets=LATENCY_BUCKETS)
SIGNALING_CONNECTIONS = Gauge(
    "verity_signaling_connections", "Socket.IO connections open now, by namespace ('/' calls, '/precall' checks).",
    ("namespace",), multiprocess_mode="livesum")

_open_connections: set[tuple[str, str]] = set()


_cleanup_registered = False


def init_app(app: Flask) -> None:
    global _cleanup_registered
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and not app.config.get("TESTING") and not _cleanup_registered:
        # A live gauge of an ended process must not count: drop this process's live files when it exits.
        atexit.register(mark_process_dead, os.getpid(), directory)
        _cleanup_registered = True


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    REQUEST_SECONDS.labels(endpoint, method, f"{status // 100}xx").observe(seconds)


def connection_opened(namespace: str, sid: str) -> None:
    if (namespace, sid) not in _open_connections:
        _open_connections.add((namespace, sid))
        SIGNALING_CONNECTIONS.labels(namespace).inc()


def connection_closed(namespace: str, sid: str) -> None:
    if (namespace, sid) in _open_connections:
        _open_connections.discard((namespace, sid))
        SIGNALING_CONNECTIONS.labels(namespace).dec()


def database_metrics() -> list[Metric]:
    """Read at scrape time (inside the app context of the /metrics request)."""
    from app.observability import services as observability
    from app.outbox import services as outbox
    from app.outbox.models import DEAD, DELIVERED, PENDING
    from app.prescribing import states

    messages = GaugeMetricFamily("verity_outbox_messages", "Outbox messages by status.", labels=["status"])
    for status, count in sorted({PENDING: 0, DELIVERED: 0, DEAD: 0, **outbox.depth()}.items()):
        messages.add_metric([status], count)
    oldest = outbox.oldest_pending_age()
    age = GaugeMetricFamily("verity_outbox_oldest_pending_age_seconds",
                            "Age of the oldest message still waiting to be delivered (0 when none is).",
                            value=oldest.total_seconds() if oldest is not None else 0.0)
    prescriptions = GaugeMetricFamily("verity_prescriptions", "Prescriptions by state.", labels=["state"])
    for state, count in states.count_by_state().items():
        prescriptions.add_metric([state], count)
    workers = GaugeMetricFamily("verity_worker_last_seen_timestamp_seconds",
                                "Unix time of each background worker's last heartbeat.", labels=["worker"])
    for beat in observability.heartbeats():
        workers.add_metric([beat.name], beat.last_seen.timestamp())
    return [messages, age, prescriptions, workers]


class _Scrape:
    """What one scrape exposes: the process (or multiprocess) registry, then the database's figures."""

    def __init__(self, sources: Iterable[object], extra: list[Metric]) -> None:
        self.sources, self.extra = list(sources), extra

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()  # type: ignore[attr-defined]
        yield from self.extra


def exposition(multiprocess_dir: str | None) -> bytes:
    if multiprocess_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiprocess_dir)
        sources: list[object] = [registry]
    else:
        sources = [REGISTRY]
    return generate_latest(_Scrape(sources, database_metrics()))  # type: ignore[arg-type]
