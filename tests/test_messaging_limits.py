"""A message with a file over the request limit is refused with a clear message, not a generic error page."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.messaging.models import Thread
from tests.conftest import csrf_from, sign_in_as


@pytest.fixture
def app_config():
    return {"MESSAGING_MAX_REQUEST_BYTES": 1024 * 1024}


def test_a_file_over_the_limit_is_refused_with_the_limit_named(app, client, personas):
    sign_in_as(client, personas["patient"])
    token = csrf_from(client.get("/messages/new").get_data(as_text=True))
    refused = client.post("/messages/new", data={"csrf_token": token, "subject": "Scan", "body": "Here it is",
                                                 "file": (io.BytesIO(b"%PDF-1.7\n" + b"0" * 1_200_000), "scan.pdf")},
                          content_type="multipart/form-data")
    assert refused.status_code == 413
    page = refused.get_data(as_text=True)
    assert "That is too large to send here (the limit is 1 MB)" in page and 'id="file-error"' in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Thread)) == 0
    # Under the limit, the same form goes through.
    small = client.post("/messages/new", data={"csrf_token": token, "subject": "Scan", "body": "Here it is"},
                        content_type="multipart/form-data")
    assert small.status_code == 302
