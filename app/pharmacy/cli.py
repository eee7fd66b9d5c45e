"""`flask pharmacy ...`: demo stock, and credentials for a pharmacy's system (shown once)."""

from __future__ import annotations

import click

pharmacy_group = click.Group("pharmacy", help="Partner pharmacies: demo stock, API keys, signing secrets.")


@pharmacy_group.command("demo", help="Stock the demo pharmacy (a portal pharmacy) with the demo formulary.")
def demo_command() -> None:
    from app.pharmacy import inventory

    click.echo(f"Booked in {inventory.load_demo_inventory()} batch(es).")


def _by_gphc(gphc: str):
    from app.pharmacy import services as pharmacies

    pharmacy = pharmacies.by_gphc(gphc)
    if pharmacy is None:
        raise click.ClickException(f"No partner pharmacy has GPhC number {gphc}.")
    return pharmacy


@pharmacy_group.command("connect-api", help="Make a pharmacy connect through the API; print its key and secret once.")
@click.option("--gphc", required=True, help="The pharmacy's GPhC premises number.")
@click.option("--webhook-url", default="", help="Where Verity pushes prescriptions (empty: the pharmacy pulls).")
def connect_api(gphc: str, webhook_url: str) -> None:
    from app.pharmacy import services as pharmacies

    pharmacy = _by_gphc(gphc)
    values = {name: getattr(pharmacy, name) or "" for name in ("name", "gphc_number", "address", "contact_name",
                                                               "contact_email", "contact_phone", "client_cert_sha256")}
    pharmacies.update(pharmacy, {**values, "connection": "api", "webhook_url": webhook_url})
    issued = pharmacies.issue_api_key(pharmacy)
    secret = pharmacies.rotate_signing_secret(pharmacy)
    click.echo(f"API key:        {issued.key}\nSigning secret: {secret}\n(Neither is shown again.)")
