"""Security headers on every response (issue 12), checked by walking the application.

Every GET route in the app's url_map is fetched as every persona of the access tests, its URL built from the
same tables (tests/access/), as a full page over HTTPS and, where it renders, as an htmx fragment over HTTP; every
POST route of those tables is sent once per persona, as tests/test_access.py does. Static files, the error
paths (404, 405, a refused CSRF token, 401 for htmx and JSON callers, 413, 429, 500), the guest's call page and
the proxy's scheme are checked on their own. `problems_with` says what each response must carry:

- a Content-Security-Policy with no 'unsafe-inline' or 'unsafe-eval', scripts from 'self' only (or none),
  object-src 'none', frame-ancestors 'none' (a stored document's file alone may be framed, by its own viewer);
- X-Content-Type-Options: nosniff, a Referrer-Policy that sends no path to other sites;
- a Permissions-Policy that lets a page use the camera and microphone exactly when it loads a script that
  asks for them (followed through its imports), and denies geolocation, payment and USB everywhere;
- Strict-Transport-Security over HTTPS and never over plain HTTP.

`.ci/run` runs this through `make test`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path, PurePosixPath

import pytest

from app import create_app, policy
from app.auth.models import User
from app.extensions import db
from tests.access import ANON, CLIN, EVERYONE, PATIENT, all_expectations, url_of
from tests.conftest import TEST_PASSWORD, config_for, csrf_from, sign_in_as

EXPECTED = all_expectations()
HTTPS = "https://localhost"
STATIC = Path(__file__).resolve().parent.parent / "app" / "static"
ONE_YEAR = 365 * 24 * 3600

#: The one response that may be framed, and by whom: a stored document's file, which its viewer page shows in
#: an <iframe> (app/documents/templates/documents/view.html). Every other response: frame-ancestors 'none'.
FRAMED = {"documents.file": "'self'"}

#: Referrer policies that never send a path (which may hold a patient's id or a guest's link) to another site.
SAFE_REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin"}

#: Features no page of Verity uses.
ALWAYS_DENIED = ("geolocation", "payment", "usb")

_IMPORT = re.compile(r"""(?:\bimport\b[^'"]*?|\bimport\s*\()\s*['"]([^'"]+)['"]""")
_SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc=["']([^"']+)["']""")


# Reading the headers ---------------------------------------------------------------------------------

def directives(csp: str) -> dict[str, list[str]]:
    """'a b; c d' -> {'a': ['b'], 'c': ['d']}; as browsers do, the first of a repeated directive counts."""
    found: dict[str, list[str]] = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            found.setdefault(words[0].lower(), words[1:])
    return found


def features(permissions_policy: str) -> dict[str, str]:
    """'camera=(), microphone=(self)' -> {'camera': '()', 'microphone': '(self)'}."""
    pairs = (item.partition("=") for item in permissions_policy.split(","))
    return {name.strip(): value.strip() for name, _, value in pairs if name.strip()}


def _static_file(url: str) -> Path | None:
    path = PurePosixPath(url.split("?", 1)[0].split("#", 1)[0])
    if path.parts[:2] != ("/", "static"):
        return None
    return STATIC.joinpath(*path.parts[2:])


@functools.cache
def _media_apis(script: Path) -> frozenset[str]:
    """The media-capture APIs a script calls, itself or through the modules it imports (relative imports)."""
    apis: set[str] = set()
    todo, seen = [script], set()
    while todo:
        current = todo.pop()
        if current in seen or not current.is_file():
            continue
        seen.add(current)
        source = current.read_text(encoding="utf-8")
        apis |= set(re.findall(r"\b(getUserMedia|getDisplayMedia)\b", source))
        todo += [(current.parent / target).resolve() for target in _IMPORT.findall(source) if target.startswith(".")]
    return frozenset(apis)


def media_apis_of_page(html: str) -> set[str]:
    apis: set[str] = set()
    for src in _SCRIPT_SRC.findall(html):
        script = _static_file(src)
        if script is not None:
            apis |= _media_apis(script.resolve())
    return apis


def problems_with(response, where: str, *, https: bool, endpoint: str | None = None) -> list[str]:
    """Everything wrong with one response's security headers (an empty list when nothing is)."""
    problems: list[str] = []
    headers = response.headers

    def bad(message: str) -> None:
        problems.append(f"{where} -> {response.status_code}: {message}")

    html = response.mimetype == "text/html"
    policies = headers.getlist("Content-Security-Policy")
    if len(policies) != 1:
        bad(f"{len(policies)} Content-Security-Policy headers")
        return problems
    csp = directives(policies[0])
    # A stored document (a PDF or a re-encoded JPEG, never HTML) is served sandboxed with default-src 'none':
    # nothing in it can run or load. Its CSP allows inline style for the browser's own image and PDF viewer
    # documents (Chromium logs a violation for its image document without it); never for a page of ours.
    sandboxed_file = not html and "sandbox" in csp and csp.get("default-src") == ["'none'"]
    for name, sources in csp.items():
        for source in sources:
            if source in ("'unsafe-eval'", "'unsafe-hashes'", "'wasm-unsafe-eval'"):
                bad(f"{name} allows {source}")
            if source == "'unsafe-inline'" and not (name == "style-src" and sandboxed_file):
                bad(f"{name} allows 'unsafe-inline'")
    scripts = csp.get("script-src", csp.get("default-src"))
    if scripts not in (["'self'"], ["'none'"]):
        bad(f"scripts from {scripts}, not 'self' only")
    if csp.get("object-src", csp.get("default-src")) != ["'none'"]:
        bad(f"object-src is {csp.get('object-src', csp.get('default-src'))}, not 'none'")
    ancestors = FRAMED.get(endpoint or "", "'none'") if response.status_code == 200 else "'none'"
    if csp.get("frame-ancestors") != [ancestors]:
        bad(f"frame-ancestors is {csp.get('frame-ancestors')}, not {ancestors}")
    if headers.get("X-Frame-Options") != ("DENY" if ancestors == "'none'" else "SAMEORIGIN"):
        bad(f"X-Frame-Options is {headers.get('X-Frame-Options')}")
    if html and (csp.get("base-uri") != ["'none'"] or csp.get("form-action") != ["'self'"]):
        bad(f"a page with base-uri {csp.get('base-uri')} and form-action {csp.get('form-action')}")

    if headers.get("X-Content-Type-Options") != "nosniff":
        bad(f"X-Content-Type-Options is {headers.get('X-Content-Type-Options')}")
    if headers.get("Referrer-Policy") not in SAFE_REFERRER_POLICIES:
        bad(f"Referrer-Policy is {headers.get('Referrer-Policy')}")

    allowed = features(headers.get("Permissions-Policy", ""))
    if not allowed:
        bad("no Permissions-Policy")
    for feature in ALWAYS_DENIED:
        if allowed.get(feature) != "()":
            bad(f"Permissions-Policy {feature}={allowed.get(feature)}")
    apis = media_apis_of_page(response.get_data(as_text=True)) if html else set()
    wanted = {"camera": "getUserMedia" in apis, "microphone": "getUserMedia" in apis,
              "display-capture": bool(apis)}
    for feature, uses in wanted.items():
        if allowed.get(feature) != ("(self)" if uses else "()"):
            bad(f"Permissions-Policy {feature}={allowed.get(feature)} on a page that "
                f"{'uses' if uses else 'does not use'} it")

    hsts = headers.get("Strict-Transport-Security")
    if https:
        age = re.search(r"max-age=(\d+)", hsts or "")
        if not age or int(age.group(1)) < ONE_YEAR:
            bad(f"over HTTPS with Strict-Transport-Security {hsts!r}")
    elif hsts is not None:
        bad("Strict-Transport-Security over plain HTTP")
    return problems


def allows_camera(response) -> bool:
    return features(response.headers.get("Permissions-Policy", "")).get("camera") == "(self)"


def report(problems: list[str]) -> str:
    shown = problems[:40]
    more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    return "\n".join(shown) + more


# The walk ---------------------------------------------------------------------------------------------

def test_every_get_route_is_walked(app):
    """The walk below takes its routes from the access tables: they name every route (test_access.py checks)
    and each GET route is a GET there, so none is left out of the walk."""
    gets = {rule.endpoint for rule in app.url_map.iter_rules() if "GET" in rule.methods and rule.endpoint != "static"}
    not_walked = sorted(endpoint for endpoint in gets if EXPECTED.get(endpoint, ("",))[0] != "GET")
    assert not not_walked, f"GET routes the walk would not fetch: {not_walked}"
    assert len(gets) > 100


# On SQLite only: the headers are set by the web layer whatever the engine, and test_access.py walks the same
# routes on PostgreSQL too. The walk is the slowest test here; twice would add minutes and find nothing new.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("who", EVERYONE)
def test_every_route_answers_with_the_security_headers(app, personas, who):
    problems: list[str] = []
    unreached: list[str] = []
    media_pages: set[str] = set()
    # The same order and the same requests as test_access.py, so the objects the tables make are in the same
    # state; each page a persona may see is fetched a second time as an htmx fragment.
    for endpoint, (method, args, expected) in sorted(EXPECTED.items()):
        client = app.test_client()
        sign_in_as(client, personas[who])
        url = url_of(app, endpoint, args, personas)
        if method == "GET":
            page = client.get(url, base_url=HTTPS)
            problems += problems_with(page, f"GET {url} ({endpoint}) as {who} over HTTPS", https=True,
                                      endpoint=endpoint)
            if expected[who] == 200 and page.status_code != 200:
                unreached.append(f"{url} ({endpoint}): {page.status_code}")
            if page.status_code == 200:
                media_pages |= {endpoint} if allows_camera(page) else set()
                fragment = client.get(url, headers={"HX-Request": "true"})
                problems += problems_with(fragment, f"htmx GET {url} ({endpoint}) as {who}", https=False,
                                          endpoint=endpoint)
            continue
        token_page = "/login" if who == ANON else "/auth/two-factor" if personas[who].totp_secret else "/dashboard"
        headers = {"X-CSRFToken": csrf_from(client.get(token_page).get_data(as_text=True))}
        response = client.open(url, method=method, headers=headers)
        problems += problems_with(response, f"{method} {url} ({endpoint}) as {who}", https=False, endpoint=endpoint)
    assert not unreached, f"the walk did not reach the pages it is meant to check as {who}: {unreached}"
    assert not problems, report(problems)
    # The camera check above is not empty: the pages that use the camera were among those walked.
    uses_camera = {"consult.precall"} | ({"consult.call"} if who in (PATIENT, CLIN) else set())
    assert media_pages == (set() if who == ANON else uses_camera)


def test_a_guests_call_page_may_use_the_camera_and_nothing_else_of_theirs_may(app, personas):
    from app.consult import services
    from app.scheduling import services as scheduling
    from tests.access.consult import _appointment

    appointment_id = _appointment(app, personas)
    with app.test_request_context():
        appointment = scheduling.get(appointment_id)
        key = services.invite_guest(appointment, db.session.get(User, personas["clinician"].user_id),
                                    name="Maria Lopez", role="interpreter")
        link = services.guest_link_token(appointment, key)
    guest = app.test_client()
    page = guest.get(f"/consult/guest/{link}", base_url=HTTPS)
    assert page.status_code == 200 and 'data-seat="guest"' in page.get_data(as_text=True)
    assert allows_camera(page)
    problems = problems_with(page, "the guest's call page", https=True, endpoint="consult.guest")
    token = guest.post(f"/consult/guest/{link}/token",
                       headers={"X-CSRFToken": csrf_from(guest.get(f"/consult/guest/{link}").get_data(as_text=True))})
    assert token.status_code == 200 and token.is_json
    problems += problems_with(token, "the guest's join token", https=False, endpoint="consult.guest_token")
    gone = guest.get(f"/consult/guest/{link}x")
    assert gone.status_code == 404 and not allows_camera(gone)
    problems += problems_with(gone, "a tampered guest link", https=False, endpoint="consult.guest")
    assert not problems, report(problems)


# Static files -----------------------------------------------------------------------------------------

def test_static_files_carry_the_security_headers(client):
    problems: list[str] = []
    files = sorted(p for p in STATIC.rglob("*") if p.is_file())
    assert len(files) > 10
    for path in files:
        url = "/static/" + path.relative_to(STATIC).as_posix()
        response = client.get(url, base_url=HTTPS)
        assert response.status_code == 200, url
        problems += problems_with(response, f"GET {url}", https=True, endpoint="static")
        if response.headers.get("ETag"):
            again = client.get(url, headers={"If-None-Match": response.headers["ETag"]})
            assert again.status_code == 304, url
            problems += problems_with(again, f"conditional GET {url}", https=False, endpoint="static")
    missing = client.get("/static/js/no-such-file.js")
    assert missing.status_code == 404
    problems += problems_with(missing, "a missing static file", https=False, endpoint="static")
    assert not problems, report(problems)


# Errors ------------------------------------------------------------------------------------------------

def test_error_responses_carry_the_security_headers(app, world):
    def boom():
        raise RuntimeError("a fault in a view")

    app.add_url_rule("/_test/fault", "test_fault", policy.public(boom))
    patient = world.patient("alice")
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    seen: dict[str, object] = {
        "an unknown page": client.get("/no-such-page", base_url=HTTPS),
        "an unknown API path": client.get("/api/pharmacy/v1/no-such-thing"),
        "an unknown FHIR resource": client.get("/fhir/NoSuchResource/1", base_url=HTTPS),
        "a GET to a POST-only route": client.get("/logout"),
        "a form without its CSRF token": client.post("/login", data={"email": "x@example.com", "password": "x"}),
        "htmx asking for a page while signed out": client.get("/dashboard", headers={"HX-Request": "true"}),
        "JSON asking for a page while signed out": client.get("/dashboard", headers={"Accept": "application/json"}),
        "a request body over the limit": client.post(
            "/login", data={"csrf_token": token, "email": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)}),
        "a fault in a view": client.get("/_test/fault", base_url=HTTPS),
        "a fault answered as JSON": client.get("/_test/fault", headers={"Accept": "application/json"}),
    }
    for _attempt in range(10):
        throttled = client.post("/login", data={"csrf_token": token, "email": patient.email, "password": "wrong"})
        if throttled.status_code == 429:
            break
    seen["too many sign-in attempts"] = throttled
    assert client.post("/login", data={"csrf_token": token, "email": patient.email,
                                       "password": TEST_PASSWORD}).status_code == 429
    statuses = {what: response.status_code for what, response in seen.items()}
    assert statuses == {
        "an unknown page": 404, "an unknown API path": 404, "an unknown FHIR resource": 404,
        "a GET to a POST-only route": 405, "a form without its CSRF token": 400,
        "htmx asking for a page while signed out": 401, "JSON asking for a page while signed out": 401,
        "a request body over the limit": 413, "a fault in a view": 500, "a fault answered as JSON": 500,
        "too many sign-in attempts": 429}
    problems: list[str] = []
    for what, response in seen.items():
        problems += problems_with(response, what, https=response.request.scheme == "https")
    assert not problems, report(problems)


# Transport ---------------------------------------------------------------------------------------------

def test_hsts_follows_the_scheme_the_trusted_proxy_reports(database_url, tmp_path):
    behind_proxy = create_app(config_for(database_url, tmp_path, PROXY_HOPS=1)).test_client()
    (tmp_path / "direct").mkdir()
    direct = create_app(config_for(database_url, tmp_path / "direct")).test_client()
    for url in ("/", "/login", "/no-such-page", "/static/js/verity.js", "/.well-known/jwks.json"):
        over_tls = behind_proxy.get(url, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.1"})
        assert "max-age" in over_tls.headers.get("Strict-Transport-Security", ""), url
        plain = behind_proxy.get(url, headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "192.0.2.1"})
        assert "Strict-Transport-Security" not in plain.headers, url
        # Without a proxy to trust, a client's own X-Forwarded-Proto changes nothing.
        claimed = direct.get(url, headers={"X-Forwarded-Proto": "https"})
        assert "Strict-Transport-Security" not in claimed.headers, url
        assert "max-age" in direct.get(url, base_url=HTTPS).headers["Strict-Transport-Security"], url


def test_the_checks_catch_what_they_look_for(app):
    """The checks themselves: a response that breaks each rule is reported, and a good one is not."""
    good = app.test_client().get("/login", base_url=HTTPS)
    assert problems_with(good, "good", https=True) == []
    assert any("over plain HTTP" in p for p in problems_with(good, "good", https=False))

    def tampered(name: str, value: str | None):
        response = app.test_client().get("/login", base_url=HTTPS)
        if value is None:
            del response.headers[name]
        else:
            response.headers[name] = value
        return problems_with(response, "tampered", https=True)

    csp = good.headers["Content-Security-Policy"]
    assert tampered("Content-Security-Policy", csp.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'"))
    assert tampered("Content-Security-Policy", csp.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'"))
    assert tampered("Content-Security-Policy", csp.replace("script-src 'self'", "script-src 'self' cdn.example"))
    assert tampered("Content-Security-Policy", csp.replace("frame-ancestors 'none'", "frame-ancestors 'self'"))
    assert tampered("Content-Security-Policy", csp.replace("object-src 'none'", "object-src 'self'"))
    assert tampered("Content-Security-Policy", None)
    assert tampered("X-Content-Type-Options", None)
    assert tampered("Referrer-Policy", "unsafe-url")
    assert tampered("Permissions-Policy", good.headers["Permissions-Policy"].replace("camera=()", "camera=(self)"))
    assert tampered("Permissions-Policy", None)
    assert tampered("Strict-Transport-Security", "max-age=60")
    assert media_apis_of_page('<script type="module" src="/static/js/consult-check.js"></script>') == {"getUserMedia"}
    assert media_apis_of_page('<script src="/static/js/verity.js"></script>') == set()
