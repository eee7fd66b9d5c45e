"""`flask --app wsgi intake ...`: commands of the intake blueprint's own CLI group."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Blueprint


def register(bp: Blueprint) -> None:
    @bp.cli.command("load", help="Load questionnaire versions from FHIR JSON files (default: the clinic's "
                                 "intake), each with its rules from rules/<name>.rules.json. Idempotent.")
    @click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def load(paths: tuple[Path, ...]) -> None:
        from app.intake import services

        try:
            results = services.load_files(list(paths) or list(services.DEFAULT_FILES))
        except services.LoadError as exc:
            click.echo("Nothing was loaded:", err=True)
            for problem in exc.problems:
                click.echo(f"  - {problem}", err=True)
            sys.exit(1)
        for result in results:
            version = result.version
            click.echo(f"{'Loaded' if result.created else 'Already loaded'}: {version.title} "
                       f"version {version.version} ({version.url}), id {version.id}.")
