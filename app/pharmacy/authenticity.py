"""What the pharmacist sees about a prescription's signature before acting on it: each check on its own
line (the PDF's PAdES signature, the PDF unchanged since signing, the JWS over the FHIR Bundle, the
signer's certificate from the clinic's CA) and the verdict prescribing's verification page gives."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.database import utcnow
from app.prescribing import pdf, pki, verification
from app.prescribing.models import Prescription


@dataclass(frozen=True)
class Check:
    label: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Report:
    verdict: verification.Verdict
    checks: list[Check]
    certificate_subject: str | None
    certificate_fingerprint: str | None
    certificate_valid_until: dt.datetime | None

    @property
    def all_ok(self) -> bool:
        return self.verdict.authentic and all(c.ok for c in self.checks)


def report(prescription: Prescription) -> Report:
    verdict = verification.verdict(prescription)
    checks: list[Check] = []
    subject = fingerprint = valid_until = None
    if prescription.pdf is not None:
        checked = pdf.check(prescription.pdf, expected_sha256=prescription.pdf_sha256)
        checks.append(Check("PDF signature", checked.valid,
                            f"Signed by {checked.signer}" if checked.valid else checked.message))
        checks.append(Check("Unchanged since signing", checked.matches_record,
                            "The PDF is byte for byte the one signed (SHA-256 matches the record)"
                            if checked.matches_record else "The PDF differs from the one signed"))
    checks.append(Check("Signed FHIR prescription (JWS)", verification.jws_valid(prescription),
                        "ES256 signature verifies with the clinic's published keys"
                        if verification.jws_valid(prescription) else "The JWS does not verify"))
    row = pki.by_fingerprint(prescription.signer_fingerprint) if prescription.signer_fingerprint else None
    if row is not None:
        subject, fingerprint, valid_until = row.subject, row.fingerprint, row.not_after
        issued_by_ca = pki.issuer_of(row) is not None
        in_date = prescription.signed_at is not None and row.not_before <= prescription.signed_at <= row.not_after
        checks.append(Check("Signing certificate", issued_by_ca and in_date,
                            f"{row.subject}, issued by the clinic's CA, valid at signing (until "
                            f"{row.not_after:%-d %B %Y})" if issued_by_ca and in_date
                            else "The certificate is not the clinic's or was not valid when it signed"))
    else:
        checks.append(Check("Signing certificate", False, "No certificate on record for this signature"))
    checks.append(Check("Within its 28 days", prescription.valid_until is not None and
                        prescription.valid_until > utcnow(),
                        f"Valid until {prescription.valid_until:%-d %B %Y}" if prescription.valid_until else "—"))
    return Report(verdict, checks, subject, fingerprint, valid_until)
