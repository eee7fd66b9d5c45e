"""What a file is, by its first bytes (never by its name), and whether a PDF really opens.

Accepted: PDF, JPEG, PNG and HEIC/HEIF (iPhone photos). The magic numbers only decide which
checker runs next; the checker then opens the file with the real parser (pypdf, Pillow), so
a file that merely starts like a PDF is refused all the same.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError

from app.documents.errors import DocumentRejected, Reason

PDF, JPEG, PNG, HEIC = "application/pdf", "image/jpeg", "image/png", "image/heic"
ACCEPTED = (PDF, JPEG, PNG, HEIC)
#: What the file inputs offer (the browser's picker filter; the server decides by content).
ACCEPT_ATTRIBUTE = "application/pdf,image/jpeg,image/png,image/heic,image/heif,.pdf,.jpg,.jpeg,.png,.heic,.heif"
#: Bytes needed to recognise any accepted type.
SNIFF_BYTES = 64
#: The PDF specification lets a reader look for the %PDF- header in the first 1024 bytes and
#: for the %%EOF marker in the last 1024.
PDF_WINDOW = 1024

#: ISO base media file brands of HEIF images that pillow-heif decodes (HEVC-coded; not AVIF).
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}

#: Programs and scripts get a message of their own: "that is a program", not "wrong type".
EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"#!", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe",
                    b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"PK\x03\x04")

logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about odd producers are noise here


def sniff(head: bytes) -> str:
    """The content type of a file that starts with `head`, or raise DocumentRejected."""
    if not head:
        raise DocumentRejected(Reason.EMPTY)
    if b"%PDF-" in head[:PDF_WINDOW]:
        return PDF
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[4:8] == b"ftyp" and _heif_brand(head):
        return HEIC
    if head.startswith(EXECUTABLE_MAGIC):
        # ZIP is here too: Office files and archives are not documents we can show the clinician.
        raise DocumentRejected(Reason.PROGRAM if not head.startswith(b"PK") else Reason.WRONG_TYPE)
    raise DocumentRejected(Reason.WRONG_TYPE)


def _heif_brand(head: bytes) -> bool:
    major = head[8:12]
    box_size = int.from_bytes(head[0:4], "big")
    compatible = {head[i:i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
    if b"avif" in compatible | {major} or b"avis" in compatible | {major}:
        return False
    return major in HEIF_BRANDS or bool(compatible & (HEIF_BRANDS - {b"mif1", b"msf1"}))


def sniff_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return sniff(fh.read(PDF_WINDOW))


def pdf_page_count(path: Path) -> int:
    """Open the PDF as a reader would; return its page count or raise DocumentRejected.

    A file without %%EOF near its end was cut off (a download that did not finish): it is
    refused before pypdf, which would otherwise try to rebuild it by reading all of it.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - PDF_WINDOW))
        if b"%%EOF" not in fh.read():
            raise DocumentRejected(Reason.PDF_DAMAGED)
        fh.seek(0)
        try:
            # A file object, not a path: given a path pypdf reads the whole file into memory.
            reader = PdfReader(fh, strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                # Only an owner password (printing or copying restrictions) opens with "": fine.
                raise DocumentRejected(Reason.PDF_PASSWORD)
            pages = len(reader.pages)
        except DocumentRejected:
            raise
        except FileNotDecryptedError as exc:
            raise DocumentRejected(Reason.PDF_PASSWORD) from exc
        except (PyPdfError, PdfReadError, ValueError, KeyError, TypeError, AttributeError, RecursionError,
                NotImplementedError, OSError) as exc:
            # pypdf raises more than its own errors on broken files; each means "it does not open".
            raise DocumentRejected(Reason.PDF_DAMAGED) from exc
    if pages < 1:
        raise DocumentRejected(Reason.PDF_DAMAGED)
    return pages
