"""Demo data: idempotent, signs in, and never served outside demo mode."""

from __future__ import annotations

import pyotp
import pytest
import sqlalchemy as sa

from app import demo
from app.auth import services as accounts
from app.auth.models import User
from app.extensions import db


def test_demo_load_is_idempotent(ctx):
    created = demo.load()
    assert len(created) == len(demo.ACCOUNTS)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(User))
    assert demo.load() == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == count


def test_demo_staff_sign_in_with_the_published_secrets(ctx):
    demo.load()
    for account in demo.ACCOUNTS:
        result = accounts.authenticate(account.email, account.password)
        assert result.user is not None, account.email
        if account.totp_secret:
            assert accounts.verify_totp(result.user, pyotp.TOTP(account.totp_secret).now())
    patient = demo.ACCOUNTS[0]
    assert accounts.find_by_email(patient.email).has_totp is False


def test_server_refuses_demo_accounts_outside_demo_mode(ctx):
    demo.load()
    ctx.config["DEMO_MODE"] = False
    with pytest.raises(demo.UnsafeStart, match="demo accounts"):
        demo.refuse_unsafe_start(ctx)
    ctx.config["DEMO_MODE"] = True
    demo.refuse_unsafe_start(ctx)


def test_empty_database_starts_outside_demo_mode(ctx):
    ctx.config["DEMO_MODE"] = False
    demo.refuse_unsafe_start(ctx)
