"""Request bodies read as forms, whatever their shape, never as a crash.

A multipart part without a name (no `name=`, or one cut short by a line break or a backslash)
comes out of werkzeug's parser under the key None, and Flask-WTF's CSRF check (which runs before
every POST) calls .endswith() on every key: a 500 for any POST anywhere. `Request` drops such parts,
as browsers never send them.

Flask-WTF lets a form read a JSON body (the chunked upload's "start" takes one) by handing
`request.get_json()` to a MultiDict as it is. A body that is not an object (`true`, `[1, 2]`)
then raises TypeError, and nested objects or numbers reach fields that expect text (a `Length`
validator calling len() on a dict): a 500 for a malformed request. `install()` makes every form
read JSON as the browser's form encoding would carry it: an object's strings, numbers and
booleans as text, a list as repeated values; anything else (a nested object, null, a body that is
not an object) is left out, and the form's own validation says what is missing.
"""

from __future__ import annotations

from typing import Any

from flask import Request as FlaskRequest
from flask import request
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto, _is_submitted
from werkzeug.datastructures import ImmutableMultiDict


class Request(FlaskRequest):
    """Flask's request, whose form and files hold only parts that have a name."""

    def _load_form_data(self) -> None:
        super()._load_form_data()
        for key in ("form", "files"):
            parsed = self.__dict__.get(key)
            if parsed is not None and None in parsed:
                self.__dict__[key] = type(parsed)(
                    (name, value) for name, value in parsed.items(multi=True) if isinstance(name, str))

_original = FlaskForm.Meta.wrap_formdata


def as_formdata(body: Any) -> ImmutableMultiDict:
    """The fields of a JSON body as a form post would send them."""
    if not isinstance(body, dict):
        return ImmutableMultiDict()
    pairs: list[tuple[str, str]] = []
    for key, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            text = _as_text(item)
            if text is not None:
                pairs.append((str(key), text))
    return ImmutableMultiDict(pairs)


def _as_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None  # null, objects and lists inside lists: not something a form field holds


def _wrap_formdata(self, form, formdata):
    if formdata is _Auto and _is_submitted() and not request.files and not request.form and request.is_json:
        return as_formdata(request.get_json())  # invalid JSON: werkzeug answers 400
    return _original(self, form, formdata)


def install() -> None:
    """Make every FlaskForm read JSON bodies through `as_formdata` (idempotent)."""
    FlaskForm.Meta.wrap_formdata = _wrap_formdata
