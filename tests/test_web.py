"""The web shell: security headers, strict CSP with no inline code, error pages, health check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import create_app
from tests.conftest import config_for, sign_in_as

TEMPLATE_DIRS = [p for p in Path("app").rglob("templates") if p.is_dir()]


def test_every_page_carries_the_security_headers(client, personas):
    sign_in_as(client, personas["patient"])
    for url in ("/", "/login", "/dashboard", "/healthz", "/nowhere"):
        headers = client.get(url).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert "camera=()" in headers["Permissions-Policy"]
    assert client.get("/dashboard").headers["Cache-Control"] == "no-store"


def test_hsts_only_behind_tls(client):
    assert "Strict-Transport-Security" not in client.get("/").headers
    assert "max-age" in client.get("/", base_url="https://localhost").headers["Strict-Transport-Security"]


@pytest.mark.parametrize("template", [p for d in TEMPLATE_DIRS for p in d.rglob("*.html") if "email" not in p.parts],
                         ids=str)
def test_templates_hold_no_inline_script_or_style(template):
    """The CSP would block them anyway; this finds them before a browser does."""
    html = template.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\sstyle=", html), "inline style attribute"
    assert not re.search(r"<style[\s>]", html), "inline <style>"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert "hx-on" not in html, "hx-on needs eval"


def test_pages_render_in_the_design_system_with_the_brand(client):
    page = client.get("/").get_data(as_text=True)
    assert "vendor/nhsuk-frontend/nhsuk-frontend.min.css" in page
    assert "vendor/htmx/htmx.min.js" in page
    assert '"includeIndicatorStyles": false' in page
    assert 'aria-label="Verity homepage"' in page
    assert "not part of the NHS" in page
    assert "assets.nhs.uk" not in page and "cdn" not in page.lower()


def test_vendored_assets_are_served_with_their_licences(client):
    for path in ("/static/vendor/htmx/htmx.min.js", "/static/vendor/nhsuk-frontend/nhsuk-frontend.min.css",
                 "/static/vendor/nhsuk-frontend/nhsuk-frontend.min.js", "/static/js/verity.js"):
        response = client.get(path)
        assert response.status_code == 200 and len(response.data) > 100, path
    assert Path("app/static/vendor/htmx/LICENSE").exists()
    assert Path("app/static/vendor/nhsuk-frontend/LICENSE").exists()
    css = client.get("/static/vendor/nhsuk-frontend/nhsuk-frontend.min.css").get_data(as_text=True)
    assert "http" not in css, "no font or image from another site"


def test_not_found_is_a_designed_page(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Page not found" in page and "nhsuk-header" in page and "Traceback" not in page


def test_api_callers_get_json_errors(client):
    response = client.get("/fhir/Nothing/1")
    assert response.status_code == 404
    assert response.get_json()["status"] == 404


def test_unexpected_error_is_a_designed_500_without_details(app):
    from app import policy

    @policy.public
    def explode():
        raise RuntimeError("secret internals")

    app.add_url_rule("/explode-for-test", "explode", explode)
    response = app.test_client().get("/explode-for-test")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Sorry, there is a problem with the service" in page
    assert "secret internals" not in page and "Traceback" not in page


def test_oversized_request_is_refused_clearly(client):
    response = client.post("/login", data={"email": "a" * (3 * 1024 * 1024)})
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)


def test_healthz_reports_the_database(client, database_url):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok"
    assert body["database"] == {"status": "ok", "engine": database_url.split(":")[0].split("+")[0]}


def test_healthz_says_when_the_database_is_down(tmp_path):
    app = create_app(config_for("postgresql+psycopg://nobody@127.0.0.1:1/none", tmp_path,
                                SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connect_timeout": 2}}))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"]["status"] == "unavailable"


def test_a_view_without_a_rule_stops_the_app(tmp_path):
    from flask import Blueprint

    from app import policy

    app = create_app(config_for(f"sqlite:///{tmp_path}/x.db", tmp_path))
    bp = Blueprint("careless", __name__)
    bp.add_url_rule("/careless", "careless", lambda: "open to all")
    app.register_blueprint(bp)
    with pytest.raises(RuntimeError, match=r"careless\.careless"):
        policy.check_every_view_has_a_rule(app)


def test_missing_secrets_stop_the_app(tmp_path):
    from app import ConfigurationError

    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app({**config_for(f"sqlite:///{tmp_path}/x.db", tmp_path), "SECRET_KEY": None})
    with pytest.raises(ConfigurationError, match="VERITY_DATA_KEY"):
        create_app({**config_for(f"sqlite:///{tmp_path}/x.db", tmp_path), "DATA_KEY": None})
