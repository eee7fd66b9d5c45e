"""Every route that takes a POST, PUT or PATCH, sent random forms and JSON: never a 500 (hypothesis).

The routes come from the app's url_map, so a new one is fuzzed without a line here. Each is sent,
as a persona allowed to use it (the route x role tables in tests/access/, else the view's rule in
app.policy) and with a valid CSRF token, bodies drawn at random: form fields named as the app's
forms and views name them (and not), with text in any script, control and direction characters,
huge strings, numbers as text, repeated keys, dates that do not exist; JSON of any shape (objects,
lists, nested, wrong types, NaN); JSON that does not parse; files; a body over the request limit.
Every answer must be below 500 and carry no traceback.

One engine, SQLite, and one app for the whole module (its database keeps what the requests
change, as a real one would): on both engines and with a fresh database per route the run would
take several times as long, and what it hunts (a crash on odd input) lives in the views and
services, not the SQL dialect. 15 examples a route, from a seed of the route's own, so that a run
is repeatable and each route gets different ones; about a minute in all.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import pkgutil
import re
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import app as app_package
from app import create_app, policy
from app.auth.models import Role
from tests.access import ANON, all_expectations
from tests.conftest import World, config_for, csrf_from, migrate, sign_in_as

EXPECTED = all_expectations()
#: Examples per route, and whether to draw them afresh each run (a longer hunt: VERITY_FUZZ_EXAMPLES=200
#: VERITY_FUZZ_RANDOM=1); by default the same 15 each run, so that make test is repeatable.
EXAMPLES = int(os.environ.get("VERITY_FUZZ_EXAMPLES", "15"))
RANDOM = os.environ.get("VERITY_FUZZ_RANDOM") == "1"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"/[^\"]+\", line \d+")
CRASH_TITLE = "Sorry, there is a problem with the service"
#: Who tries a route first, when the access table lets several use it.
PREFERENCE = ("patient", "clinician", "reception", "admin", "pharmacist", "other_patient", "other_clinician",
              "other_pharmacist", ANON)
ROLE_PERSONA = {Role.PATIENT: "patient", Role.CLINICIAN: "clinician", Role.RECEPTION: "reception",
                Role.ADMIN: "admin", Role.PHARMACIST: "pharmacist"}


def _routes() -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) of every state-changing route, from an app made for the purpose."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="verity-fuzz-routes-") as folder:
        made = create_app(config_for("sqlite://", Path(folder)))
        found = sorted({(rule.endpoint, method, rule.rule) for rule in made.url_map.iter_rules()
                        for method in rule.methods & STATE_CHANGING})
    return found


ROUTES = _routes()


def _vocabulary() -> list[str]:
    """Field names the app reads: every WTForms field (also under the prefixes pages use) and every
    name a view takes from request.form, request.args or a JSON body."""
    from wtforms.fields.core import UnboundField

    names: set[str] = set()
    for info in pkgutil.walk_packages(app_package.__path__, "app."):
        if not info.name.endswith(".forms"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type):
                names.update(k for k in dir(value) if isinstance(getattr(value, k, None), UnboundField))
    source = "\n".join(p.read_text() for p in Path(app_package.__file__).parent.rglob("*.py"))
    names.update(re.findall(r"(?:form|args|values|json|data|body|payload)(?:\.get|\.getlist|\.pop)?"
                            r"\(?\[?[\"']([a-z][a-z0-9_]{1,40})[\"']", source))
    prefixes = set(re.findall(r"prefix=\"([a-z_]+)\"", source))
    names.update(f"{prefix}-{name}" for prefix in prefixes for name in list(names))
    names.discard("csrf_token")
    return sorted(names)


VOCABULARY = _vocabulary()

# Values ------------------------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
ODD = ["", " ", "0", "-1", "1", "2", "9" * 40, "-9" * 20, "1e309", "NaN", "nan", "inf", "-0", "0x10", "1_000",
       "true", "false", "null", "None", "[]", "{}", "2026-02-30", "2026-13-01", "0000-00-00", "31/12/1999",
       "10:61", "25:00", "<script>alert(1)</script>", "' OR 1=1 --", "../../etc/passwd", "%00", "\x00",
       "\u202ereversed", "\ufeff", "e\u0301", "\U0001f600", "\uff46\uff55\uff4c\uff4c", "a" * 5000, "x" * 100_000,
       "approve", "reject", "yes", "on", "patient", "admin", "passport", "other", "medical_summary"]
scalar = st.one_of(text, st.sampled_from(ODD), st.integers().map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), st.dates().map(str))
#: Names that break a naive parser: a part name cut by a line break or a backslash reaches the app as None.
NASTY_NAMES = ["", " ", "a\nb", "a\rb", "x\\", 'a"b', "a;b", "\x00", "csrf_token", "cancel-csrf_token", "[]",
               "kind[]", "__proto__", "\u202e", "é"]
field_name = st.one_of(st.sampled_from(VOCABULARY), st.sampled_from(NASTY_NAMES), text.filter(bool))
form_fields = st.dictionaries(field_name, st.one_of(scalar, st.lists(scalar, min_size=2, max_size=3)), max_size=12)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | text
    | st.sampled_from(ODD),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(field_name, inner, max_size=6),
    max_leaves=25)
json_body = st.one_of(st.dictionaries(field_name, json_value, max_size=10), json_value)


@st.composite
def bodies(draw) -> dict:
    """Keyword arguments for the test client's request: one kind of body, random headers."""
    kind = draw(st.sampled_from(["form", "form", "json", "json", "multipart", "broken-json", "huge"]))
    headers = {"Accept": draw(st.sampled_from(["text/html", "application/json", "*/*"]))}
    if draw(st.booleans()):
        headers["HX-Request"] = "true"
    if kind == "form":
        return {"data": draw(form_fields), "headers": headers}
    if kind == "multipart":
        data = draw(form_fields)
        files = draw(st.lists(st.tuples(field_name, st.binary(max_size=2000), text), max_size=2))
        for name, content, filename in files:
            earlier = data.get(name, [])
            data[name] = [*(earlier if isinstance(earlier, list) else [earlier]),
                          (io.BytesIO(content), filename or "file")]
        return {"data": data, "headers": headers, "content_type": "multipart/form-data"}
    if kind == "json":
        return {"data": json.dumps(draw(json_body)), "headers": headers, "content_type": "application/json"}
    if kind == "broken-json":
        return {"data": draw(st.binary(max_size=200)), "headers": headers, "content_type": "application/json"}
    return {"data": {"field": "x" * (3 * 1024 * 1024)}, "headers": headers}  # over the request limit


# The app and its people -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, templates):
    """One app on a copy of the migrated SQLite template, for every route of the module."""
    import shutil

    if "sqlite" not in templates:
        folder = tmp_path_factory.mktemp("sqlite-template")
        migrate(f"sqlite:///{folder / 'template.db'}", folder)
        templates["sqlite"] = str(folder / "template.db")
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copyfile(templates["sqlite"], folder / "verity.db")
    made = create_app(config_for(f"sqlite:///{folder / 'verity.db'}", folder))
    yield made
    with made.app_context():
        from app.extensions import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def cast(fuzz_app) -> dict:
    """The personas of tests/conftest.py, made once for the module."""
    from tests.conftest import Persona

    world = World(fuzz_app)
    clinician = world.staff(Role.CLINICIAN, "clinician")
    other_clinician = world.staff(Role.CLINICIAN, "otherclinician")
    return {
        ANON: Persona(ANON, None, None),
        "patient": world.patient("alice", clinician=clinician),
        "other_patient": world.patient("bob", clinician=other_clinician),
        "clinician": clinician,
        "other_clinician": other_clinician,
        "reception": world.staff(Role.RECEPTION),
        "pharmacist": world.staff(Role.PHARMACIST, pharmacy="main"),
        "other_pharmacist": world.staff(Role.PHARMACIST, "otherpharmacist", pharmacy="other"),
        "admin": world.staff(Role.ADMIN),
    }


def _persona_for(fuzz_app, endpoint: str, method: str) -> str:
    """Someone the route is for: allowed by its access table (the owner of the objects in its URL)."""
    if endpoint in EXPECTED:
        table_method, _args, expected = EXPECTED[endpoint]
        allowed = {200} if table_method == "GET" and method != "GET" else {200, 302, 400, 409, 422}
        for persona in PREFERENCE:
            if expected.get(persona) in allowed:
                return persona
    rule = policy.rule_of(fuzz_app.view_functions[endpoint])
    if rule is None or rule.roles is None:
        return ANON
    return next(ROLE_PERSONA[role] for role in (Role.PATIENT, Role.CLINICIAN, Role.RECEPTION, Role.ADMIN,
                                                Role.PHARMACIST) if role in rule.roles)


def _url(fuzz_app, cast, endpoint: str) -> str:
    from flask import url_for

    args = EXPECTED[endpoint][1] if endpoint in EXPECTED else {}
    values = {}
    for name, owner in args.items():
        if callable(owner):
            values[name] = owner(fuzz_app, cast)
        else:
            persona = cast[owner]
            values[name] = persona.patient_id if name == "patient_id" else persona.user_id
    rule = next(r for r in fuzz_app.url_map.iter_rules() if r.endpoint == endpoint)
    for name in rule.arguments - values.keys():
        converter = rule._converters[name]
        values[name] = 1 if type(converter).__name__ == "IntegerConverter" else \
            next(iter(getattr(converter, "items", None) or ["x"]))
    with fuzz_app.test_request_context():
        return url_for(endpoint, **values)


def _signed_in(fuzz_app, persona) -> tuple:
    client = fuzz_app.test_client()
    sign_in_as(client, persona)
    page = "/login" if persona.user_id is None else "/auth/two-factor" if persona.totp_secret else "/dashboard"
    return client, csrf_from(client.get(page).get_data(as_text=True))


# The fuzz ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "method", "rule"), ROUTES, ids=[f"{m} {r}" for _e, m, r in ROUTES])
def test_random_input_never_crashes_a_route(fuzz_app, cast, caplog, endpoint, method, rule):
    who = _persona_for(fuzz_app, endpoint, method)
    url = _url(fuzz_app, cast, endpoint)
    session = {"client": None}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(request=bodies())
    def send(request):
        if session["client"] is None:
            session["client"], session["token"] = _signed_in(fuzz_app, cast[who])
        client = session["client"]
        request["headers"]["X-CSRFToken"] = session["token"]
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="app"):
            response = client.open(url, method=method, **request)
        body = response.get_data(as_text=True)
        crash = next((r for r in caplog.records if r.exc_info), None)
        detail = "".join(logging.Formatter().formatException(crash.exc_info)) if crash else body[:800]
        assert response.status_code < 500, f"{method} {url} as {who}: {response.status_code}\n{detail}"
        assert not TRACEBACK.search(body) and CRASH_TITLE not in body, f"{method} {url} as {who}: a traceback\n{body}"
        if response.status_code == 401 or "/login" in response.headers.get("Location", ""):
            session["client"] = None  # signed out (logout, a session ended): sign in again for the next one

    if not RANDOM:
        send = seed(zlib.crc32(f"{method} {rule}".encode()))(send)  # the same examples each run, not each route
    send()


# What the fuzz found, pinned ----------------------------------------------------------------------

def test_a_multipart_part_without_a_name_is_ignored_not_a_crash(fuzz_app, cast):
    """werkzeug files such a part under the key None; Flask-WTF's CSRF check called None.endswith()."""
    client, token = _signed_in(fuzz_app, cast["patient"])
    body = (b"--b\r\nContent-Disposition: form-data\r\n\r\nnameless\r\n"
            b'--b\r\nContent-Disposition: form-data; name="a\\\r\n\r\ncut short\r\n'
            b'--b\r\nContent-Disposition: form-data; name="subject"\r\n\r\nHello\r\n--b--\r\n')
    response = client.post("/messages/new", data=body, content_type="multipart/form-data; boundary=b",
                           headers={"X-CSRFToken": token})
    assert response.status_code == 400, response.status_code  # the form's own message: no body given
    assert "Enter your message" in response.get_data(as_text=True) or "message" in response.get_data(as_text=True)


@pytest.mark.parametrize("body", ["true", "[1, 2]", '"text"', "3.5", "null", '{"reason": {"nested": [1]}}',
                                  '{"reason": 5, "kind": ["medical_summary", {"x": 1}]}'])
def test_a_json_body_of_any_shape_gets_the_forms_answer(fuzz_app, cast, body):
    """Flask-WTF handed any JSON to a MultiDict (TypeError for `true`), and objects to text fields."""
    client, token = _signed_in(fuzz_app, cast["clinician"])
    url = _url(fuzz_app, cast, "documents.cancel_request")
    response = client.post(url, data=body, content_type="application/json",
                           headers={"X-CSRFToken": token, "Accept": "application/json"})
    assert response.status_code == 400


def test_a_flat_json_object_still_fills_a_form(fuzz_app, cast):
    """The chunked upload's start takes JSON as well as a form post."""
    client, token = _signed_in(fuzz_app, cast["patient"])
    response = client.post("/documents/uploads", json={"kind": "other", "filename": "scan.pdf", "size": 1234,
                                                      "request_id": None},
                           headers={"X-CSRFToken": token, "Accept": "application/json"})
    assert response.status_code == 201, response.json
    assert response.json["size"] == 1234
