"""Signatures a pharmacist can check: pdfsig and pyHanko on the PAdES PDF, the verification page,
the JWS against /.well-known/jwks.json only, and the clinic CA's keys.

pdfsig (poppler) validates with NSS. Without an NSS database that trusts the clinic CA it reports
"Signature Validation: Signature is Valid." with "Certificate Validation: Certificate issuer isn't
Trusted."; with one (made here with certutil, trust flags CT,CT,CT) it reports "Certificate is Trusted.".
pdfsig is run without -no-ocsp: the certificates carry no OCSP or AIA address, so nothing is fetched,
and poppler 22.12 with -no-ocsp reports "Unknown issue with Certificate" even for a trusted chain.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from app import crypto
from app.auth.models import User
from app.extensions import db
from app.prescribing import formulary, pki, services, states, verification
from app.prescribing.models import Prescription, SigningCertificate
from tests.conftest import csrf_from, sign_in_as
from tests.test_prescribing_helpers import FLOWER, acting_as, prepare, sign_new

PDFSIG = shutil.which("pdfsig")
CERTUTIL = shutil.which("certutil")
PYHANKO = Path(sys.executable).with_name("pyhanko")
#: A SNOMED-shaped dm+d code with a valid Verhoeff check digit (made up for the test).
TEST_DMD = "39720311000001101"


def _signed(app, personas, **kwargs) -> dict:
    with app.app_context():
        ready = prepare(personas)
        if kwargs.pop("dmd", False):
            product = formulary.get(ready.products[FLOWER])
            formulary.update(product, {**{k: getattr(product, k) for k in (
                "name", "manufacturer", "form", "thc", "cbd", "pack_size", "schedule", "unlicensed", "active")},
                "price": product.price_pence / 100, "dmd_code": TEST_DMD})
        prescription = sign_new(ready, **kwargs)
        return {"id": prescription.id, "public_id": prescription.public_id, "pdf": prescription.pdf,
                "jws": prescription.jws, "ca_pem": pki.ca().certificate_pem,
                "signer": db.session.get(User, ready.clinician_id).full_name, "ready": ready}


def _flip_one_byte(pdf: bytes) -> bytes:
    """Change one byte inside a compressed content stream, well inside the first signed range."""
    start = pdf.index(b"stream\n") + len(b"stream\n") + 20
    data = bytearray(pdf)
    data[start] ^= 0x01
    return bytes(data)


def _pdfsig(path: Path, *extra: str) -> str:
    done = subprocess.run([PDFSIG, *extra, str(path)], capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def _nss_trusting(folder: Path, ca_pem: str) -> Path:
    db_dir = folder / "nss"
    db_dir.mkdir()
    (folder / "ca.pem").write_text(ca_pem)
    subprocess.run([CERTUTIL, "-N", "-d", f"sql:{db_dir}", "--empty-password"], check=True, timeout=60)
    subprocess.run([CERTUTIL, "-A", "-d", f"sql:{db_dir}", "-n", "Verity clinic CA", "-t", "CT,CT,CT", "-i",
                    str(folder / "ca.pem")], check=True, timeout=60)
    return db_dir


@pytest.mark.skipif(PDFSIG is None, reason="pdfsig (poppler-utils) is installed by `make test`")
def test_pdfsig_finds_a_valid_signature_from_the_clinicians_certificate(app, personas, tmp_path):
    signed = _signed(app, personas)
    path = tmp_path / "prescription.pdf"
    path.write_bytes(signed["pdf"])
    report = _pdfsig(path)
    assert f"Signer Certificate Common Name: {signed['signer']}" in report
    assert "Signature Type: ETSI.CAdES.detached" in report
    assert "Total document signed" in report
    assert "Signature Validation: Signature is Valid." in report
    # No trust store given: the signature verifies, the clinic CA is simply not known to NSS.
    assert "Certificate issuer isn't Trusted" in report


@pytest.mark.skipif(PDFSIG is None or CERTUTIL is None, reason="needs pdfsig and certutil (libnss3-tools)")
def test_pdfsig_trusts_the_signature_once_the_clinic_ca_is_in_its_nss_database(app, personas, tmp_path):
    signed = _signed(app, personas)
    nss = _nss_trusting(tmp_path, signed["ca_pem"])
    path = tmp_path / "prescription.pdf"
    path.write_bytes(signed["pdf"])
    report = _pdfsig(path, "-nssdir", f"sql:{nss}")
    assert "Signature Validation: Signature is Valid." in report
    assert "Certificate Validation: Certificate is Trusted." in report


@pytest.mark.skipif(PDFSIG is None, reason="pdfsig (poppler-utils) is installed by `make test`")
def test_one_flipped_byte_is_reported_invalid_by_pdfsig_and_the_verification_page(app, personas, tmp_path, client):
    signed = _signed(app, personas)
    tampered = _flip_one_byte(signed["pdf"])
    path = tmp_path / "tampered.pdf"
    path.write_bytes(tampered)
    report = _pdfsig(path)
    assert "Signature is Valid" not in report
    assert "Digest Mismatch" in report

    sign_in_as(client, personas["pharmacist"])
    page = client.get(f"/verify/{signed['public_id']}").get_data(as_text=True)
    token = csrf_from(page)
    response = client.post(f"/verify/{signed['public_id']}/check", data={
        "csrf_token": token, "pdf": (io.BytesIO(tampered), "prescription.pdf")},
        content_type="multipart/form-data")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Signature invalid" in html and "changed after it was signed" in html

    genuine = client.post(f"/verify/{signed['public_id']}/check", data={
        "csrf_token": token, "pdf": (io.BytesIO(signed["pdf"]), "prescription.pdf")},
        content_type="multipart/form-data")
    assert genuine.status_code == 200
    assert "Signature valid and matches the record" in genuine.get_data(as_text=True)


def test_a_pdf_with_content_appended_after_signing_does_not_match(app, personas, client):
    signed = _signed(app, personas)
    appended = signed["pdf"] + b"\n% appended after signing\n"
    sign_in_as(client, personas["pharmacist"])
    token = csrf_from(client.get(f"/verify/{signed['public_id']}").get_data(as_text=True))
    response = client.post(f"/verify/{signed['public_id']}/check", data={
        "csrf_token": token, "pdf": (io.BytesIO(appended), "p.pdf")}, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "matches the record" not in response.get_data(as_text=True).split("pdf-check-result")[1][:200]


def test_pyhankos_validator_accepts_the_signature_against_the_clinic_ca(app, personas, tmp_path):
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    signed = _signed(app, personas)
    root = asn1_x509.Certificate.load(x509.load_pem_x509_certificate(signed["ca_pem"].encode()).public_bytes(
        serialization.Encoding.DER))
    embedded = PdfFileReader(io.BytesIO(signed["pdf"])).embedded_signatures[0]
    status = validate_pdf_signature(embedded, ValidationContext(trust_roots=[root], allow_fetching=False))
    assert status.bottom_line and status.intact and status.trusted
    assert embedded.signer_cert.subject.native["common_name"] == signed["signer"]
    if PYHANKO.exists():  # the CLI (pyhanko-cli) says the same
        (tmp_path / "ca.pem").write_text(signed["ca_pem"])
        (tmp_path / "p.pdf").write_bytes(signed["pdf"])
        (tmp_path / "t.pdf").write_bytes(_flip_one_byte(signed["pdf"]))
        command = [str(PYHANKO), "sign", "validate", "--trust", str(tmp_path / "ca.pem"), "--trust-replace",
                   "--no-revocation-check"]
        good = subprocess.run([*command, str(tmp_path / "p.pdf")], capture_output=True, text=True, timeout=60)
        assert good.returncode == 0 and "INTACT:TRUSTED" in good.stdout
        bad = subprocess.run([*command, str(tmp_path / "t.pdf")], capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0


def test_the_jws_verifies_with_only_the_published_jwks_and_carries_fhir_medication_requests(app, personas):
    signed = _signed(app, personas, dmd=True)
    public = app.test_client().get("/.well-known/jwks.json")
    assert public.status_code == 200 and public.headers["Content-Type"].startswith("application/json")
    keys = KeySet.import_key_set(public.get_json())
    token = jws.deserialize_compact(signed["jws"], keys, algorithms=["ES256"])
    assert token.headers()["alg"] == "ES256"
    bundle = Bundle.model_validate(json.loads(token.payload))
    request = bundle.entry[0].resource
    assert isinstance(request, MedicationRequest)
    assert (request.status, request.intent) == ("active", "order")
    assert request.medicationCodeableConcept.coding[0].system == "https://dmd.nhs.uk"
    assert request.medicationCodeableConcept.coding[0].code == TEST_DMD
    assert request.dispenseRequest.quantity.value == 30
    assert request.dispenseRequest.expectedSupplyDuration.value == 30
    # The key's x5c chain ends at the clinic CA.
    jwk = public.get_json()["keys"][0]
    leaf = x509.load_der_x509_certificate(base64.b64decode(jwk["x5c"][0]))
    root = x509.load_pem_x509_certificate(signed["ca_pem"].encode())
    leaf.verify_directly_issued_by(root)
    # A payload changed after signing does not verify.
    head, _body, signature = signed["jws"].split(".")
    forged_body = base64.urlsafe_b64encode(token.payload.replace(b'"value":30', b'"value":90')) \
        .rstrip(b"=").decode()
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(f"{head}.{forged_body}.{signature}", keys, algorithms=["ES256"])


def test_the_verification_page_shows_anonymous_visitors_no_patient_data(app, personas, client):
    signed = _signed(app, personas)
    html = client.get(f"/verify/{signed['public_id']}").get_data(as_text=True)
    assert "Authentic" in html and signed["signer"] in html and "<strong>valid</strong>" in html
    assert "Alice Example" not in html and "Orchard Lane" not in html and "Verdant" not in html
    assert client.get("/verify/not-a-prescription").status_code == 404

    sign_in_as(client, personas["pharmacist"])
    html = client.get(f"/verify/{signed['public_id']}").get_data(as_text=True)
    assert "Alice Example" in html and "Orchard Lane" in html and "30 (thirty) grams" in html

    other = app.test_client()
    sign_in_as(other, personas["other_pharmacist"])
    assert "Alice Example" not in other.get(f"/verify/{signed['public_id']}").get_data(as_text=True)


@pytest.mark.parametrize(("ending", "status"), [("cancel", "cancelled"), ("expire", "expired"),
                                                ("dispense", "dispensed")])
def test_the_verification_page_says_when_a_prescription_may_not_be_supplied(app, personas, client, ending, status):
    import datetime as dt

    from app.database import transaction, utcnow

    signed = _signed(app, personas)
    with app.app_context():
        prescription = db.session.get(Prescription, signed["id"])
        if ending == "cancel":
            with acting_as(signed["ready"].clinician_id, "clinician"):
                services.cancel(prescription, db.session.get(User, signed["ready"].clinician_id), "Duplicate")
        elif ending == "expire":
            with transaction():
                db.session.execute(sa.update(Prescription).where(Prescription.id == prescription.id)
                                   .values(valid_until=utcnow() - dt.timedelta(minutes=1)))
        else:
            with acting_as(personas["pharmacist"].user_id, "pharmacist"):
                for state in ("transmitted", "received_by_pharmacy", "stock_allocated", "awaiting_original"):
                    states.apply(prescription, state, actor_role="pharmacy")
                services.record_original_received(prescription, matches=True)
                states.apply(prescription, "clinically_verified", actor_role="pharmacy")
                states.apply(prescription, "dispensed", actor_role="pharmacy")
    html = client.get(f"/verify/{signed['public_id']}").get_data(as_text=True)
    assert f"<strong>{status}</strong>" in html and "Do not supply" in html


def test_a_tampered_stored_pdf_makes_the_record_not_authentic(app, personas):
    signed = _signed(app, personas)
    with app.app_context():
        db.session.execute(sa.text("UPDATE prescriptions SET pdf = :pdf WHERE id = :id"),
                           {"pdf": _flip_one_byte(signed["pdf"]), "id": signed["id"]})
        db.session.commit()
        verdict = verification.verdict(db.session.get(Prescription, signed["id"]))
    assert not verdict.authentic and verdict.status == "not authentic"


def test_signing_keys_are_encrypted_at_rest_and_bound_to_their_row(app, personas):
    _signed(app, personas)
    with app.app_context():
        row = db.session.scalar(sa.select(SigningCertificate).where(SigningCertificate.kind == "clinician"))
        assert b"PRIVATE" not in row.key_encrypted
        with pytest.raises(Exception):  # noqa: B017 - AES-GCM's InvalidTag: another purpose does not decrypt
            crypto.decrypt(row.key_encrypted, "signing_certificates.key:ca:0:" + row.serial)


def test_pki_init_refuses_to_replace_the_ca_unless_forced(app, personas):
    signed = _signed(app, personas)
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["pki", "init"])
    assert refused.exit_code != 0 and "already exists" in refused.output
    forced = runner.invoke(args=["pki", "init", "--force"])
    assert forced.exit_code == 0, forced.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).where(SigningCertificate.kind == "ca")) == 2
        # What the old CA's certificate signed still verifies.
        assert verification.verdict(db.session.get(Prescription, signed["id"])).authentic
    printed = runner.invoke(args=["pki", "ca-cert"])
    assert printed.output.startswith("-----BEGIN CERTIFICATE-----")


def test_signing_works_from_a_thread_that_runs_an_event_loop(ctx):
    """pyHanko wraps asyncio.run: signing must not fail where a loop already runs (an ASGI server
    thread, or a test session driving a browser), as the route x role walk once found."""
    import asyncio

    from app.prescribing import pdf

    async def in_a_loop():
        return pdf._outside_event_loop(lambda: asyncio.run(asyncio.sleep(0, result="signed")))

    assert asyncio.run(in_a_loop()) == "signed"
