"""PDFs: the signed prescription (WeasyPrint + pyHanko PAdES), the FP10PCD print, the CD log; checking an upload.

The prescription PDF carries every field reg. 15 asks for and a QR code to the verification
page, and is signed PAdES B-B (ETSI.CAdES.detached) with the clinician's key, the CA's
certificate in the CMS so a verifier can build the chain to the clinic CA.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from flask import render_template
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from app.prescribing import pki

T = TypeVar("T")

log = logging.getLogger(__name__)
STYLESHEET = Path(__file__).parent / "pdf.css"
SIGNATURE_FIELD = "Prescriber"


def render(template: str, **context: Any) -> bytes:
    """HTML template → PDF bytes. Imported lazily: WeasyPrint is heavy and only signing needs it."""
    import weasyprint

    html = render_template(template, **context)
    return weasyprint.HTML(string=html, base_url=str(Path(__file__).parent)).write_pdf(
        stylesheets=[weasyprint.CSS(filename=str(STYLESHEET))])


def _asn1_cert(cert) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _outside_event_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call one of pyHanko's sync functions (they wrap `asyncio.run`) from any thread.

    Under a WSGI server the request thread has no event loop and the call runs here; in a thread
    that already runs one (an asyncio server, a test session driving a browser) `asyncio.run`
    refuses, so the call runs in a short-lived thread of its own.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyhanko") as pool:
        return pool.submit(fn, *args, **kwargs).result()


def pades_sign(pdf: bytes, material: pki.SigningMaterial, *, signer_name: str, reason: str) -> bytes:
    key = asn1_keys.PrivateKeyInfo.load(material.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    signer = signers.SimpleSigner(signing_cert=_asn1_cert(material.certificate), signing_key=key,
                                  cert_registry=SimpleCertificateStore.from_certs([_asn1_cert(material.ca_certificate)]))
    meta = signers.PdfSignatureMetadata(field_name=SIGNATURE_FIELD, subfilter=fields.SigSeedSubFilter.PADES,
                                        md_algorithm="sha256", reason=reason, name=signer_name)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    return _outside_event_loop(signers.sign_pdf, writer, meta, signer=signer).getvalue()


@dataclass(frozen=True)
class PdfCheck:
    #: The signature is cryptographically intact and chains to the clinic CA.
    valid: bool
    #: The file is byte for byte the PDF Verity stored when it was signed.
    matches_record: bool
    signer: str | None
    #: SHA-256 of the signer's certificate, when one was found.
    signer_fingerprint: str | None
    message: str


def check(data: bytes, *, expected_sha256: str | None) -> PdfCheck:
    """Validate an uploaded PDF's signature against the clinic CA and compare it with the record."""
    matches = expected_sha256 is not None and hashlib.sha256(data).hexdigest() == expected_sha256
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
    except Exception:  # any parse failure means: not a PDF we can trust
        return PdfCheck(False, False, None, None, "This file is not a readable PDF.")
    if not signatures:
        return PdfCheck(False, matches, None, None, "This PDF carries no signature.")
    embedded = signatures[0]
    roots = [_asn1_cert(c) for c in pki.trust_roots()]
    try:
        status = _outside_event_loop(validate_pdf_signature, embedded,
                                     ValidationContext(trust_roots=roots, allow_fetching=False))
    except Exception as exc:  # a corrupted signature or structure: report, do not crash
        log.info("uploaded PDF failed validation", extra={"error": type(exc).__name__})
        return PdfCheck(False, False, None, None, "The signature in this PDF is damaged: the file was altered.")
    cert = embedded.signer_cert
    signer = cert.subject.native.get("common_name") if cert is not None else None
    fingerprint = hashlib.sha256(cert.dump()).hexdigest() if cert is not None else None
    whole = status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    if not (status.intact and status.valid):
        return PdfCheck(False, False, signer, fingerprint,
                        "The signature does not match the content: the PDF was changed after it was signed.")
    if not status.trusted:
        return PdfCheck(False, False, signer, fingerprint,
                        "The signature is not from a certificate issued by this clinic.")
    if not whole:
        return PdfCheck(False, False, signer, fingerprint,
                        "Content was added to the PDF after it was signed.")
    if not matches:
        return PdfCheck(True, False, signer, fingerprint,
                        "The signature is genuine, but this PDF is not the one recorded for this prescription.")
    return PdfCheck(True, True, signer, fingerprint, "The signature is valid and the PDF matches the record.")
