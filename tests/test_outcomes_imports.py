"""Health-data imports end to end: the chunked upload (the protocol uploads.js speaks), kept encrypted on
disk, then the worker's all-or-nothing import with its progress; bad files named by line, nothing half
imported; a day imported again replaces the earlier value."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from app.extensions import db
from app.outcomes import imports
from app.outcomes.models import OutcomeImport, OutcomeObservation
from tests.conftest import csrf_from, sign_in_as
from tests.test_outcomes_parsers import HEALTH


def _session(client, persona) -> str:
    sign_in_as(client, persona)
    return csrf_from(client.get("/outcomes/imports").get_data(as_text=True))


def _upload(client, token: str, data: bytes, name: str = "days.csv", chunk: int = 64) -> tuple[str, dict]:
    headers = {"X-CSRFToken": token, "Accept": "application/json"}
    created = client.post("/outcomes/imports/uploads", data={"filename": name, "size": str(len(data))},
                          headers=headers)
    assert created.status_code == 201, created.get_data(as_text=True)
    state = created.get_json()
    offset = 0
    while offset < len(data):
        piece = data[offset:offset + chunk]
        answer = client.post(state["chunk_url"], data=piece, headers={
            **headers, "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {offset}-{offset + len(piece) - 1}/{len(data)}"})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        offset = answer.get_json()["offset"]
    done = client.post(state["complete_url"], headers=headers)
    return state["id"], {"status": done.status_code, **(done.get_json() or {})}


def _days(app, persona, code: str) -> dict[dt.date, Decimal]:
    with app.app_context():
        rows = db.session.scalars(sa.select(OutcomeObservation).where(
            OutcomeObservation.patient_id == persona.patient_id, OutcomeObservation.code == code)).all()
        return {o.effective_at.date(): o.value for o in rows}


def test_a_csv_goes_up_in_chunks_and_the_worker_imports_it(app, client, personas):
    token = _session(client, personas["patient"])
    today = dt.date.today()
    body = (f"date,steps,sleep_hours\n{today - dt.timedelta(days=2)},8000,7.5\n"
            f"{today - dt.timedelta(days=1)},9100,\n").encode()
    import_id, done = _upload(client, token, body, chunk=16)
    assert done["status"] == 201 and done["document"]["url"] == f"/outcomes/imports/{import_id}"
    # Nothing is imported by the request: the worker does it, and the page polls its progress meanwhile.
    page = client.get(f"/outcomes/imports/{import_id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in page and "Waiting to be imported" in page
    assert _days(app, personas["patient"], "55423-8") == {}
    with app.app_context():
        assert b"8000" not in imports.part_path(import_id).read_bytes()  # kept encrypted on disk
        assert imports.run_queued() == 1
        row = db.session.get(OutcomeImport, import_id)
        assert (row.status, row.progress_bytes, row.summary["days"]) == ("done", len(body), 2)
        assert not imports.part_path(import_id).exists()
    assert _days(app, personas["patient"], "55423-8") == {today - dt.timedelta(days=2): Decimal(8000),
                                                          today - dt.timedelta(days=1): Decimal(9100)}
    assert _days(app, personas["patient"], "93832-4") == {today - dt.timedelta(days=2): Decimal("7.5")}
    finished = client.get(f"/outcomes/imports/{import_id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "every 1s" not in finished and "Imported" in finished
    # The same days again replace the earlier values, they do not double them.
    _import_id, _ = _upload(client, token, f"date,steps\n{today - dt.timedelta(days=1)},500\n".encode())
    with app.app_context():
        imports.run_queued()
    assert _days(app, personas["patient"], "55423-8")[today - dt.timedelta(days=1)] == Decimal(500)


def test_a_bad_line_imports_nothing_and_says_which_line(app, client, personas):
    token = _session(client, personas["patient"])
    good = "\n".join(f"{dt.date(2025, 1, 1) + dt.timedelta(days=n)},{1000 + n}" for n in range(50))
    import_id, done = _upload(client, token, f"date,steps\n{good}\n2025-13-01,10\n".encode(), chunk=256)
    assert done["status"] == 201
    with app.app_context():
        imports.run_queued()
        row = db.session.get(OutcomeImport, import_id)
        assert row.status == "failed" and row.error_line == 52
        assert row.message.startswith('Line 52: "2025-13-01" is not a date')
    assert _days(app, personas["patient"], "55423-8") == {}
    page = client.get(f"/outcomes/imports/{import_id}").get_data(as_text=True)
    assert "Nothing was imported" in page and "Line 52" in page


def test_an_apple_health_export_is_imported_through_the_same_path(app, client, personas):
    token = _session(client, personas["patient"])
    import_id, done = _upload(client, token, HEALTH.encode(), name="export.xml", chunk=200)
    assert done["status"] == 201
    with app.app_context():
        row = db.session.get(OutcomeImport, import_id)
        assert row.format == "apple-health"
        imports.run(imports.claim(), today=dt.date(2026, 3, 20))
    assert _days(app, personas["patient"], "55423-8") == {dt.date(2026, 3, 18): Decimal(3500)}
    assert _days(app, personas["patient"], "40443-4") == {dt.date(2026, 3, 18): Decimal("59.5")}


def test_a_zip_is_refused_with_its_first_chunk(client, personas):
    token = _session(client, personas["patient"])
    headers = {"X-CSRFToken": token, "Accept": "application/json"}
    state = client.post("/outcomes/imports/uploads", data={"filename": "export.zip", "size": "100"},
                        headers=headers).get_json()
    answer = client.post(state["chunk_url"], data=b"PK\x03\x04" + b"\x00" * 96, headers={
        **headers, "Content-Type": "application/octet-stream", "Content-Range": "bytes 0-99/100"})
    assert answer.status_code == 422
    assert "Open export.zip, then upload the export.xml" in answer.get_json()["error"]
    again = client.post(state["chunk_url"], data=b"x", headers={
        **headers, "Content-Type": "application/octet-stream", "Content-Range": "bytes 0-0/100"})
    assert again.status_code == 410


def test_sizes_and_offsets_are_checked(client, personas, app):
    token = _session(client, personas["patient"])
    headers = {"X-CSRFToken": token, "Accept": "application/json"}
    assert client.post("/outcomes/imports/uploads", data={"filename": "a.csv", "size": "0"},
                       headers=headers).status_code == 422
    too_big = client.post("/outcomes/imports/uploads", data={"filename": "a.csv", "size": str(2 * 1024 ** 3)},
                          headers=headers)
    assert too_big.status_code == 413 and "smaller than" in too_big.get_json()["error"]
    state = client.post("/outcomes/imports/uploads", data={"filename": "a.csv", "size": "20"},
                        headers=headers).get_json()
    wrong = client.post(state["chunk_url"], data=b"date", headers={
        **headers, "Content-Type": "application/octet-stream", "Content-Range": "bytes 4-7/20"})
    assert wrong.status_code == 409 and wrong.get_json()["offset"] == 0
    early = client.post(state["complete_url"], headers=headers)
    assert early.status_code == 409
    # Someone else's upload is not theirs to send to.
    sign_in_as(client, personas["other_patient"])
    other_token = csrf_from(client.get("/outcomes/imports").get_data(as_text=True))
    assert client.get(state["status_url"]).status_code == 403
    assert client.post(state["chunk_url"], data=b"date", headers={
        "X-CSRFToken": other_token, "Content-Range": "bytes 0-3/20"}).status_code == 403


def test_without_javascript_the_form_posts_the_file(app, client, personas):
    import io

    token = _session(client, personas["patient"])
    response = client.post("/outcomes/imports", data={
        "csrf_token": token, "file": (io.BytesIO(b"date,steps\n2026-01-02,42\n"), "days.csv")},
        content_type="multipart/form-data")
    assert response.status_code == 302 and response.headers["Location"].startswith("/outcomes/imports/")
    empty = client.post("/outcomes/imports", data={"csrf_token": token}, content_type="multipart/form-data")
    assert empty.status_code == 400 and "Choose a CSV file" in empty.get_data(as_text=True)
    with app.app_context():
        assert imports.run_queued() == 1
    assert _days(app, personas["patient"], "55423-8") == {dt.date(2026, 1, 2): Decimal(42)}


def test_the_template_downloads(client, personas):
    sign_in_as(client, personas["patient"])
    response = client.get("/outcomes/imports/template.csv")
    assert response.status_code == 200
    assert response.get_data(as_text=True).splitlines()[0] == "date,steps,sleep_hours,resting_heart_rate"
