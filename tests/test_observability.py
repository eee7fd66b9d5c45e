"""Observability: JSON log lines with request ids and no personal data, Prometheus metrics behind a bearer
token, worker heartbeats, and readiness that names what is down.

The log tests install the app's own handler (LOG_FORMAT=json, as production has it) and point its
stream at a buffer; the metrics tests read /metrics with prometheus_client's own parser.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import socketio
import sqlalchemy as sa
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from app import policy
from app.auth.models import Role
from app.database import transaction
from app.extensions import db
from app.observability import logs
from app.observability import services as observability
from app.observability.models import WorkerHeartbeat
from app.prescribing.states import State
from tests.conftest import sign_in_as
from tests.smtp import free_port

REPO = Path(__file__).resolve().parent.parent
TOKEN = "scrape-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 10.0


@pytest.fixture
def app_config() -> dict:
    return {"LOG_FORMAT": "json", "METRICS_TOKEN": TOKEN}


@pytest.fixture(autouse=True)
def _no_handler_left_behind() -> Iterator[None]:
    """The factory installs our handler on the root logger (LOG_FORMAT is json here): take it off after."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "verity", False)]:
        root.removeHandler(handler)


@pytest.fixture
def log_output(app) -> io.StringIO:
    """What the app's own log handler writes (the factory installed it: LOG_FORMAT is json)."""
    ours = [handler for handler in logging.getLogger().handlers if getattr(handler, "verity", False)]
    assert len(ours) == 1, "create_app did not install exactly one log handler"
    buffer = io.StringIO()
    ours[0].setStream(buffer)
    return buffer


def lines_of(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def request_lines(buffer: io.StringIO) -> list[dict]:
    return [line for line in lines_of(buffer) if line["logger"] == "app.request"]


# Logs ---------------------------------------------------------------------------------------

def test_each_request_is_one_json_line_with_its_id_and_no_query_string(client, log_output):
    response = client.get("/login?next=/staff&q=Alex+Morgan")
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    (line,) = request_lines(log_output)
    assert line["request_id"] == request_id
    assert line["level"] == "INFO" and line["method"] == "GET" and line["status"] == 200
    assert line["path"] == "/login" and "Alex" not in json.dumps(line) and "?" not in line["path"]
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    assert dt.datetime.fromisoformat(line["time"]).tzinfo is not None
    assert "user_id" not in line  # nobody is signed in


def test_a_safe_request_id_round_trips(client, log_output):
    response = client.get("/healthz", headers={"X-Request-ID": "edge-7f3a.42:b_9"})
    assert response.headers["X-Request-ID"] == "edge-7f3a.42:b_9"
    client.get("/login", headers={"X-Request-ID": "nginx-0123456789abcdef"})
    assert request_lines(log_output)[-1]["request_id"] == "nginx-0123456789abcdef"


@pytest.mark.parametrize("hostile", ['"><script>alert(1)</script>', "a" * 129, "alex.morgan@example.com",
                                     "two words", "-starts-with-a-dash", '{"level": "ERROR"}', "id;rm -rf"])
def test_a_hostile_request_id_is_replaced(client, log_output, hostile):
    response = client.get("/login", headers={"X-Request-ID": hostile})
    replaced = response.headers["X-Request-ID"]
    assert replaced != hostile and len(replaced) == 32
    assert request_lines(log_output)[-1]["request_id"] == replaced
    assert hostile not in log_output.getvalue()


def test_lines_inside_a_request_carry_its_id_and_the_signed_in_user_but_not_their_name(app, client, world,
                                                                                    log_output):
    @app.get("/_log_probe")
    @policy.public
    def _probe():  # a view of the test's own: it logs as domain code would, with an address slipped in
        logging.getLogger("app.probe").warning("could not reach %s", "alex.morgan@example.com")
        return "logged"

    clinician = world.staff(Role.CLINICIAN, "clinician")
    sign_in_as(client, clinician)
    response = client.get("/_log_probe", headers={"X-Request-ID": "probe-1"})
    assert response.status_code == 200
    probe = next(line for line in lines_of(log_output) if line["logger"] == "app.probe")
    assert probe["request_id"] == "probe-1" and probe["level"] == "WARNING"
    assert probe["message"] == "could not reach [email]"
    assert probe["user_id"] == clinician.user_id and probe["role"] == "clinician"
    staff_page = client.get("/staff?q=Alex")
    assert staff_page.status_code == 200
    line = request_lines(log_output)[-1]
    assert line["path"] == "/staff" and line["user_id"] == clinician.user_id and line["role"] == "clinician"
    text = log_output.getvalue()
    assert clinician.email not in text and "Clinician Person" not in text and "alex.morgan" not in text


def test_string_url_variables_are_logged_by_name_numbers_as_they_are(client, log_output):
    client.get("/consult/guest/a-secret-guest-link-0123456789")
    client.get("/patients/4242")
    assert client.get("/static/css/verity.css").status_code == 200
    client.post("/api/courier/v1/royal-mail/events", json={})  # refused unsigned; its path is still logged
    first, second, third, fourth = request_lines(log_output)[-4:]
    assert first["path"] == "/consult/guest/<link>" and "a-secret-guest-link" not in log_output.getvalue()
    assert second["path"] == "/patients/4242"
    assert third["path"] == "/static/css/verity.css" and third["endpoint"] == "static"
    assert fourth["path"] == "/api/courier/v1/royal-mail/events" and fourth["status"] >= 400


def test_uvicorn_websocket_handshake_lines_are_left_out(app, log_output):
    handshake = logging.getLogger("uvicorn.error")
    level = handshake.level
    handshake.setLevel(logging.INFO)  # as uvicorn sets it when it starts
    try:
        say_the_lines(handshake)
    finally:
        handshake.setLevel(level)
    messages = [line["message"] for line in lines_of(log_output)]
    assert messages == ["Uvicorn running on http://127.0.0.1:5000", '203.0.113.9:50000 - "WebSocket /socket.io/" 403']


def say_the_lines(handshake: logging.Logger) -> None:
    handshake.info('%s - "WebSocket %s" [accepted]', "203.0.113.9:50000", "/socket.io/?EIO=4&sid=abc")
    handshake.info("connection open")
    handshake.info("Uvicorn running on %s", "http://127.0.0.1:5000")
    handshake.warning('%s - "WebSocket %s" 403', "203.0.113.9:50000", "/socket.io/")


def test_database_errors_leave_out_the_values_of_the_statement(app):
    with app.app_context(), pytest.raises(sa.exc.DBAPIError) as raised:
        db.session.execute(sa.text("SELECT email FROM no_such_table WHERE email = :email"),
                           {"email": "alex.morgan@example.com"})
    assert "no_such_table" in str(raised.value) and "alex.morgan" not in str(raised.value)


def test_an_unhandled_error_is_logged_with_its_traceback_as_one_json_line(app, client, log_output):
    @app.get("/_boom")
    @policy.public
    def _boom():
        raise RuntimeError("failed for patient@demo.example.com")

    response = client.get("/_boom")
    assert response.status_code == 500
    error = next(line for line in lines_of(log_output) if line["level"] == "ERROR")
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert "RuntimeError" in error["exception"] and "[email]" in error["exception"]
    assert "patient@demo.example.com" not in log_output.getvalue()
    assert request_lines(log_output)[-1]["status"] == 500


def test_text_format_for_development_says_the_same_on_one_line(app, client):
    buffer = io.StringIO()
    app.config["LOG_FORMAT"] = "text"
    logs.configure(app, stream=buffer)  # replaces the JSON handler the factory installed
    assert len([h for h in logging.getLogger().handlers if getattr(h, "verity", False)]) == 1
    client.get("/login?q=alex@example.com", headers={"X-Request-ID": "text-1"})
    line = buffer.getvalue().splitlines()[-1]
    assert " INFO app.request GET /login 200 [duration_ms=" in line and line.endswith(" request_id=text-1]")
    assert "alex" not in buffer.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


# Metrics ------------------------------------------------------------------------------------

def scrape(client) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} from /metrics."""
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def healthz_count(samples) -> float:
    key = (("endpoint", "core.healthz"), ("method", "GET"), ("status_class", "2xx"))
    return samples.get("verity_http_request_duration_seconds_count", {}).get(key, 0.0)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}])
def test_metrics_refuse_a_scrape_without_the_token(client, headers):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "verity_" not in response.get_data(as_text=True)


def test_metrics_are_not_there_at_all_without_a_configured_token(app, client):
    app.config["METRICS_TOKEN"] = None
    assert client.get("/metrics", headers=AUTH).status_code == 404


def test_metrics_count_requests_by_endpoint_and_status_class(client):
    before = healthz_count(scrape(client))
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    client.get("/no/such/page/123")
    samples = scrape(client)
    assert healthz_count(samples) == before + 3
    buckets = samples["verity_http_request_duration_seconds_bucket"]
    assert buckets[(("endpoint", "core.healthz"), ("le", "+Inf"), ("method", "GET"), ("status_class", "2xx"))] \
        == before + 3
    assert any(dict(key).get("endpoint") == "unmatched" and dict(key).get("status_class") == "4xx"
               for key in samples["verity_http_request_duration_seconds_count"])
    assert not any("/no/such" in str(key) for key in samples["verity_http_request_duration_seconds_count"])


def test_metrics_show_outbox_depth_and_the_age_of_the_oldest_pending_message(app, client):
    from app.outbox import services as outbox
    from app.outbox.models import OutboxMessage

    samples = scrape(client)
    assert samples["verity_outbox_messages"][(("status", "pending"),)] == 0
    assert samples["verity_outbox_oldest_pending_age_seconds"][()] == 0
    with app.app_context():
        message = outbox.enqueue("email", "metrics:1", {"to": "someone@example.com", "subject": "s", "text": "t"})
        outbox.enqueue("email", "metrics:2", {"to": "someone@example.com", "subject": "s", "text": "t"})
        with transaction() as session:
            session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == message.id).values(
                created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)))
    samples = scrape(client)
    assert samples["verity_outbox_messages"][(("status", "pending"),)] == 2
    assert samples["verity_outbox_messages"][(("status", "dead"),)] == 0
    assert 600 <= samples["verity_outbox_oldest_pending_age_seconds"][()] < 3600


def test_metrics_list_prescriptions_in_every_state(client):
    prescriptions = scrape(client)["verity_prescriptions"]
    assert {dict(key)["state"] for key in prescriptions} == {state.value for state in State}
    assert set(prescriptions.values()) == {0.0}


def test_metrics_show_each_workers_last_heartbeat(app, client):
    assert scrape(client).get("verity_worker_last_seen_timestamp_seconds", {}) == {}
    with app.app_context():
        observability.Heartbeat(10, name="worker-a:101").maybe()
    seen = scrape(client)["verity_worker_last_seen_timestamp_seconds"]
    assert list(seen) == [(("worker", "worker-a:101"),)]
    assert abs(seen[(("worker", "worker-a:101"),)] - time.time()) < 300


# Readiness ----------------------------------------------------------------------------------

def age_heartbeats(app, seconds: float) -> None:
    with app.app_context(), transaction() as session:
        session.execute(sa.update(WorkerHeartbeat).values(
            last_seen=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)))


def test_readyz_wants_a_fresh_worker_heartbeat(app, client):
    body = client.get("/readyz").get_json()
    assert body["status"] == "unavailable" and body["failed"] == ["worker"]
    assert body["checks"]["worker"]["status"] == "missing" and body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"] == {"status": "not configured"}

    with app.app_context():
        observability.Heartbeat(10, name="worker-b:202").maybe()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"
    assert response.get_json()["checks"]["worker"]["fresh_workers"] == 1

    age_heartbeats(app, app.config["READY_WORKER_SECONDS"] + 30)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["worker"] and body["checks"]["worker"]["status"] == "stale"
    assert body["checks"]["worker"]["age_seconds"] > app.config["READY_WORKER_SECONDS"]

    assert client.get("/healthz").status_code == 200  # liveness does not depend on the worker


def test_readyz_names_redis_when_it_does_not_answer(app, client):
    with app.app_context():
        observability.Heartbeat(10).maybe()
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["redis"] and body["checks"]["redis"]["status"] == "unavailable"
    assert "ConnectionError" in body["checks"]["redis"]["error"]

    app.config["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["checks"]["redis"] == {"status": "ok"}


def test_readyz_without_the_worker_check(app, client):
    app.config["READY_WORKER_SECONDS"] = 0
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"]["worker"] == {"status": "not configured"}


def test_the_worker_beats_while_it_runs_and_forgets_itself_when_it_stops(app, client):
    from app import worker

    stop = threading.Event()
    running = threading.Thread(target=worker.run, args=(app, stop), daemon=True)
    running.start()
    try:
        deadline = time.monotonic() + WAIT
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the worker did not beat"
            time.sleep(0.05)
        with app.app_context():
            (beat,) = observability.heartbeats()
            assert beat.pid == os.getpid() and beat.name.endswith(f":{os.getpid()}") and beat.host
    finally:
        stop.set()
        running.join(timeout=WAIT)
    assert not running.is_alive()
    assert client.get("/readyz").get_json()["checks"]["worker"]["status"] == "missing"


def test_a_heartbeat_is_one_row_per_worker_and_long_dead_workers_are_forgotten(app):
    with app.app_context():
        old = observability.Heartbeat(10, name="crashed:1")
        old.maybe()
        age_heartbeats(app, 2 * 24 * 3600)
        live = observability.Heartbeat(0, name="live:2")
        live.maybe()
        live.maybe()
        assert [beat.name for beat in observability.heartbeats()] == ["live:2"]


# Several processes --------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys
    from app import create_app
    app = create_app({"ENV": "test", "SQLALCHEMY_DATABASE_URI": sys.argv[1], "INSTANCE_DIR": sys.argv[2]})
    client = app.test_client()
    for _ in range(int(sys.argv[3])):
        assert client.get("/healthz").status_code == 200
""")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # process figures: the engine is not involved
def test_several_processes_add_up_in_multiprocess_mode(app, client, database_url, tmp_path):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, database_url, str(tmp_path), str(count)], cwd=REPO,
                                 env=env) for count in (2, 3)]
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    app.config["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    samples = scrape(client)
    assert healthz_count(samples) == 5  # both processes' requests; this one's own are not in the directory
    assert "verity_outbox_messages" in samples  # the database's figures come with them


# Signaling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the gauge is the process's, not the database's
def test_signaling_connections_are_counted_while_open(app, client):
    from signaling import tokens
    from signaling.asgi import build

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build(app), host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning", ws="websockets-sansio"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    key = (("namespace", "/precall"),)

    def connections() -> float:
        return scrape(client).get("verity_signaling_connections", {}).get(key, 0.0)

    def wait_for(value: float) -> None:
        deadline = time.monotonic() + WAIT
        while connections() != value:
            assert time.monotonic() < deadline, f"the gauge did not reach {value}"
            time.sleep(0.02)

    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        before = connections()
        token = tokens.mint(app.config["SECRET_KEY"], room="precall-7", user_id=7, role="precall",
                            expires_at=time.time() + 60)
        peer = socketio.Client(reconnection=False)
        peer.connect(f"http://127.0.0.1:{port}", namespaces=["/precall"], auth={"token": token},
                     transports=["websocket"], wait_timeout=WAIT)
        try:
            wait_for(before + 1)
        finally:
            peer.disconnect()
        wait_for(before)
    finally:
        server.should_exit = True
        serving.join(timeout=WAIT)
