"""schemathesis fuzzes the pharmacy API from its own OpenAPI document (/api/pharmacy/openapi.json): every
operation, with generated and malformed bodies, signed and authenticated as a real pharmacy system would
(so the requests reach the state machine, not only the signature check). No answer may be a server error,
and every answer must be one the document declares, with the declared shape."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.pharmacy_peer import signed_headers
from tests.test_pharmacy_helpers import make_api, ready, sign_new

COURIER_SECRET = "schemathesis-courier"


@pytest.fixture
def app_config():
    return {"PHARMACY_API_RATE_LIMIT": "100000 per minute", "COURIER_WEBHOOK_SECRET": COURIER_SECRET}


@pytest.fixture
def world_for_api(app, personas):
    with app.app_context():
        r = ready(personas, quota_g="1000")
        credentials = make_api(r.pharmacy_id)
        public_ids = [sign_new(r, quantity="10", days="10").public_id for _ in range(2)]
    return credentials, public_ids


def _exercise(case, credentials, public_ids, pick: int) -> int:
    if "public_id" in (case.path_parameters or {}) and pick % 3:
        case.path_parameters["public_id"] = public_ids[pick % 2]  # mostly real prescriptions, sometimes not
        if pick == 5 and case.path.endswith("/status") and isinstance(case.body, dict):
            case.body = {**case.body, "status": "received"}  # now and then, a report the state machine takes
    if isinstance(case.body, NotSet):
        body = b""
    elif isinstance(case.body, bytes):
        body = case.body  # negative cases: raw bytes that are not JSON at all
    else:
        body = json.dumps(case.body, default=repr).encode()
    secret = COURIER_SECRET if case.path.startswith("/api/courier") else credentials.secret
    headers = {"Authorization": f"Bearer {credentials.key}"}
    if case.method.upper() == "POST":
        path = urllib.parse.unquote(case.operation.schema.get_full_path(case.formatted_path))
        headers.update(signed_headers(secret, body, path=path, key=uuid.uuid4().hex))
    response = case.call(headers=headers, data=body) if body else case.call(headers=headers)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                             response_schema_conformance])
    return response.status_code


def _fuzz(operation, mode, credentials, public_ids, seen: Counter) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), pick=st.integers(0, 5))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def run(case, pick):
        seen[(operation.label, _exercise(case, credentials, public_ids, pick))] += 1

    run()


def test_the_pharmacy_api_answers_every_generated_request_without_a_server_error(app, world_for_api):
    """Positive and negative (malformed) cases for each operation; pytest 9's node ids do not suit
    schemathesis's lazy fixture loader, so the operations are walked here with hypothesis directly."""
    credentials, public_ids = world_for_api
    schema = schemathesis.openapi.from_wsgi("/api/pharmacy/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 8
    seen: Counter = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, credentials, public_ids, seen)
    statuses = {status for _label, status in seen}
    # The requests got past the key and the signature: accepted ones, refused bodies, refused transitions.
    assert {200, 400, 404, 409} <= statuses, seen
    assert any(label.endswith("/status") and status == 200 for label, status in seen), seen
