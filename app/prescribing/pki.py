"""The clinic's own certificate authority and each clinician's signing key (ECDSA P-256).

`flask --app wsgi pki init` makes the CA; a clinician's key and certificate are issued on their
first signing (or by `pki issue`). Private keys are PKCS#8 DER, encrypted with the data key
(AES-GCM, app/crypto.py) under a purpose naming the row, so a key copied to another row or
column does not decrypt. They are decrypted in one place only: `signing_material()`, called by
the signing service for the clinician who is signing.

One key per clinician signs both the PAdES PDF and the JWS: both then name the same person, and
the pharmacy checks the JWS key's x5c chain to the same clinic CA as the PDF's. The public keys
(current and past, so older prescriptions still verify) are published at /.well-known/jwks.json.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import current_app
from joserfc.jwk import ECKey

from app import crypto
from app.audit import context
from app.audit import services as audit
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.prescribing.models import SigningCertificate

CA_YEARS = 10
CLINICIAN_DAYS = 730
#: A clinician certificate this close to its end is replaced at the next signing.
RENEW_BEFORE = dt.timedelta(days=30)


class PkiError(RuntimeError):
    """Something about the clinic's keys that an operator must fix; the message says how."""


def _purpose(row: SigningCertificate) -> str:
    return f"signing_certificates.key:{row.kind}:{row.user_id or 0}:{row.serial}"


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, current_app.config["CLINIC_NAME"][:64]),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _store(kind: str, user_id: int | None, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
           session) -> SigningCertificate:
    row = SigningCertificate(kind=kind, user_id=user_id, subject=cert.subject.rfc4514_string()[:300],
                             serial=format(cert.serial_number, "x"), fingerprint=_fingerprint(cert),
                             not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                             certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
                             key_encrypted=b"")
    row.key_encrypted = crypto.encrypt(key.private_bytes(serialization.Encoding.DER,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()), _purpose(row))
    session.add(row)
    session.flush()
    return row


def ca() -> SigningCertificate | None:
    return db.session.scalar(sa.select(SigningCertificate).where(SigningCertificate.kind == "ca",
                                                                 SigningCertificate.active)
                             .order_by(SigningCertificate.id.desc()).limit(1))


def init_ca(*, force: bool = False) -> SigningCertificate:
    """Create the clinic CA. Refuses when one exists, unless `force` (see the CLI's help for what that means)."""
    existing = ca()
    if existing is not None and not force:
        raise PkiError(f"The clinic CA already exists ({existing.subject}, SHA-256 {existing.fingerprint[:16]}…). "
                       "Nothing was changed. Use --force only to replace it.")
    now = utcnow()
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{current_app.config['CLINIC_NAME']} Prescribing CA")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    with transaction() as session:
        if existing is not None:
            # Retire the old CA and every certificate it issued: clinicians get new ones at their next
            # signing. Both stay stored, so what they signed still verifies.
            session.execute(sa.update(SigningCertificate).where(SigningCertificate.active)
                            .values(active=False).execution_options(synchronize_session=False))
        row = _store("ca", None, cert, key, session)
        audit.record("pki.ca_created", subject=("signing_certificate", row.id),
                     detail={"fingerprint": row.fingerprint, "replaced": existing.fingerprint if existing else None})
    return row


def _issue(user: User, session) -> SigningCertificate:
    authority = ca()
    if authority is None:
        raise PkiError("The clinic has no certificate authority yet: run `flask --app wsgi pki init` once.")
    ca_cert = certificate(authority)
    ca_key = serialization.load_der_private_key(crypto.decrypt(authority.key_encrypted, _purpose(authority)), None)
    now = utcnow()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(user.full_name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=CLINICIAN_DAYS), authority.not_after))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    session.execute(sa.update(SigningCertificate)
                    .where(SigningCertificate.user_id == user.id, SigningCertificate.active)
                    .values(active=False).execution_options(synchronize_session=False))
    row = _store("clinician", user.id, cert, key, session)
    audit.record("pki.certificate_issued", subject=("user", user.id),
                 detail={"fingerprint": row.fingerprint, "not_after": row.not_after.isoformat()})
    return row


def issue(user: User) -> SigningCertificate:
    """A new key and certificate for a clinician (the old ones are retired, kept for verification)."""
    if user.role is not Role.CLINICIAN:
        raise PkiError("Only clinicians have signing certificates.")
    with transaction() as session:
        return _issue(user, session)


def current_certificate(user: User) -> SigningCertificate | None:
    return db.session.scalar(sa.select(SigningCertificate).where(
        SigningCertificate.kind == "clinician", SigningCertificate.user_id == user.id, SigningCertificate.active)
        .order_by(SigningCertificate.id.desc()).limit(1))


def certificate(row: SigningCertificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(row.certificate_pem.encode())


def by_fingerprint(fingerprint: str) -> SigningCertificate | None:
    return db.session.scalar(sa.select(SigningCertificate).where(SigningCertificate.fingerprint == fingerprint))


def trust_roots() -> list[x509.Certificate]:
    """Every CA the clinic has had: what an old one issued stays verifiable."""
    rows = db.session.scalars(sa.select(SigningCertificate).where(SigningCertificate.kind == "ca")
                              .order_by(SigningCertificate.id))
    return [certificate(row) for row in rows]


def issuer_of(row: SigningCertificate) -> x509.Certificate | None:
    cert = certificate(row)
    for root in trust_roots():
        if root.subject == cert.issuer:
            with contextlib.suppress(ValueError, TypeError, InvalidSignature):
                cert.verify_directly_issued_by(root)
                return root  # otherwise another CA with the same name: keep looking
    return None


@dataclass(frozen=True)
class SigningMaterial:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    ca_certificate: x509.Certificate
    row: SigningCertificate


def signing_material(user: User, *, prescriber_id: int) -> SigningMaterial:
    """The clinician's decrypted key, for their own signing step only.

    Refuses unless the one signing is the prescriber and the request acts as them: a key is
    never decrypted for anybody else, nor handed out of the signing service.
    """
    actor = context.current()
    if user.id != prescriber_id or actor.user_id != user.id or user.role is not Role.CLINICIAN:
        raise PkiError("A signing key is used only by its own clinician, in their signing step.")
    with transaction() as session:
        row = current_certificate(user)
        if row is None or row.not_after - RENEW_BEFORE <= utcnow():
            row = _issue(user, session)
    authority = issuer_of(row)
    if authority is None:
        raise PkiError("The clinician's certificate does not chain to the clinic CA: run `pki issue` for them.")
    key = serialization.load_der_private_key(crypto.decrypt(row.key_encrypted, _purpose(row)), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):  # pragma: no cover - only ever P-256 is stored
        raise PkiError("Unexpected key type.")
    return SigningMaterial(key, certificate(row), authority, row)


def _b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def jwks() -> dict:
    """The public JWK Set: every clinician signing key, with its x5c chain to the clinic CA."""
    keys = []
    rows = db.session.scalars(sa.select(SigningCertificate).where(SigningCertificate.kind == "clinician")
                              .order_by(SigningCertificate.id))
    for row in rows:
        cert = certificate(row)
        public_pem = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        jwk = ECKey.import_key(public_pem).as_dict(private=False)
        authority = issuer_of(row)
        chain = [_b64(cert)] + ([_b64(authority)] if authority is not None else [])
        jwk.update({"kid": row.fingerprint, "use": "sig", "alg": "ES256", "x5c": chain,
                    "x5t#S256": base64.urlsafe_b64encode(bytes.fromhex(row.fingerprint)).rstrip(b"=").decode()})
        keys.append(jwk)
    return {"keys": keys}


