"""`flask --app wsgi pki ...` and `flask --app wsgi prescribing ...` (registered through the blueprint)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

FORCE_HELP = ("Replace an existing CA. The old CA and every clinician certificate it issued are retired (kept, so "
              "what they signed still verifies); each clinician gets a new certificate at their next signing; "
              "pharmacies must trust the new CA certificate. Use it for a planned rotation, not by accident.")


@click.group("pki", help="The clinic's certificate authority and the clinicians' signing certificates.")
def pki_group() -> None:
    pass


@pki_group.command("init", help="Create the clinic CA (ECDSA P-256). Refuses if one exists, unless --force.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@with_appcontext
def pki_init(force: bool) -> None:
    from app.prescribing import pki

    try:
        row = pki.init_ca(force=force)
    except pki.PkiError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created the clinic CA: {row.subject}\n  SHA-256 fingerprint {row.fingerprint}\n"
               f"  valid until {row.not_after:%Y-%m-%d}. Its private key is encrypted with VERITY_DATA_KEY.")


@pki_group.command("issue", help="Issue a new signing key and certificate to a clinician (retiring the old one).")
@click.option("--email", required=True)
@with_appcontext
def pki_issue(email: str) -> None:
    from app.auth import services as accounts
    from app.prescribing import pki

    user = accounts.find_by_email(email)
    if user is None:
        raise click.ClickException(f"No account with the email address {email}.")
    try:
        row = pki.issue(user)
    except pki.PkiError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Issued {row.subject} (SHA-256 {row.fingerprint}), valid until {row.not_after:%Y-%m-%d}.")


@pki_group.command("ca-cert", help="Print the clinic CA certificate (PEM), e.g. for a pharmacy's trust store.")
@with_appcontext
def pki_ca_cert() -> None:
    from app.prescribing import pki

    row = pki.ca()
    if row is None:
        raise click.ClickException("There is no clinic CA yet: run `flask --app wsgi pki init`.")
    click.echo(row.certificate_pem, nl=False)


@click.group("prescribing", help="Prescribing: formulary import, expiry, demo data.")
def prescribing_group() -> None:
    pass


@prescribing_group.command("import-formulary", help="Import products from a CSV file (all rows or none).")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def import_formulary(path: Path) -> None:
    from app.prescribing import formulary

    result = formulary.import_csv(path.read_bytes())
    if not result.ok:
        for line, message in result.errors:
            click.echo(f"line {line}: {message}", err=True)
        click.echo("Nothing was imported.", err=True)
        sys.exit(1)
    click.echo(f"Imported: {result.created} new, {result.updated} updated.")


@prescribing_group.command("expire", help="Expire prescriptions past their 28 days now (the worker does it too).")
@with_appcontext
def expire() -> None:
    from app.prescribing import services

    click.echo(f"Expired {services.expire_due()} prescription(s).")


@prescribing_group.command("demo", help="Demo formulary, prescriber details, plan and MDT approval (idempotent).")
@click.option("--patient-email", default=None, help="Prepare this patient instead of the demo patient (demo mode).")
@with_appcontext
def demo(patient_email: str | None) -> None:
    from app.prescribing import demo as prescribing_demo

    try:
        prescribing_demo.load_all(patient_email)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("Prescribing demo data ready.")
