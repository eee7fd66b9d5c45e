"""`flask --app wsgi outcomes ...`: the outcomes blueprint's commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Blueprint


def register(bp: Blueprint) -> None:
    @bp.cli.command("load", help="Load outcome instruments from FHIR Questionnaire JSON files (default: the ones "
                                 "Verity ships). Idempotent.")
    @click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def load(paths: tuple[Path, ...]) -> None:
        from app.outcomes import instruments

        for path in paths or instruments.BUILT_IN:
            try:
                result = instruments.load(instruments.read_json(path.read_bytes(), path.name))
            except instruments.InstrumentError as exc:
                click.echo(f"{path.name} was not loaded:", err=True)
                for problem in exc.problems:
                    click.echo(f"  - {problem}", err=True)
                sys.exit(1)
            click.echo(f"{'Loaded' if result.created else 'Already loaded'}: {result.instrument.title} "
                       f"version {result.instrument.version}.")

    @bp.cli.command("demo", help="Give a patient (default: the demo patient) months of demo scores and a GAD-7 due "
                                 "now. Idempotent.")
    @click.option("--patient-email", default=None)
    def demo(patient_email: str | None) -> None:
        from app import demo as app_demo
        from app.auth import services as accounts
        from app.auth.models import Role
        from app.outcomes import services
        from app.patients import services as patients

        email = patient_email or next(a.email for a in app_demo.ACCOUNTS if a.role is Role.PATIENT)
        user = accounts.find_by_email(email)
        patient = patients.for_user(user) if user is not None else None
        if patient is None:
            raise click.ClickException(f"No patient account {email}: load the demo accounts first.")
        due = services.load_demo_outcomes(patient)
        click.echo(f"Demo outcomes ready for {email} (patient {patient.id}): GAD-7 due (questionnaire {due.id}).")

    @bp.cli.command("schedule", help="Open the questionnaires that have come due (what the worker does).")
    def run_schedule() -> None:
        from app.outcomes import schedule

        click.echo(f"Opened {schedule.run_schedule()} questionnaire(s).")

    @bp.cli.command("run-imports", help="Import the queued health-data files now (what the worker does).")
    def run_imports() -> None:
        from app.outcomes import imports

        click.echo(f"Finished {imports.run_queued(limit=100)} import(s).")
