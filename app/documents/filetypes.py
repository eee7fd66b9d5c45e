"""What a file is, by its first bytes (never by its name), and whether a PDF really opens.

Accepted: PDF, JPEG, PNG and HEIC/HEIF (iPhone photos). The magic numbers only decide which
checker runs next; the checker then opens the file with the real parser (pypdf, Pillow), so
a file that merely starts like a PDF is refused all the same.

A PDF is stored as it was sent (photos are re-encoded, see imaging.py), so it must be nothing
else besides: its header comes first (a page that starts as HTML, SVG or GIF and carries a PDF
further on is refused, though the PDF specification lets readers look 1024 bytes in), it is not
also a ZIP archive, and it holds no active content (scripts, actions that start programs or send
data, attached files, XFA forms). pypdf reads it under tighter limits than its own: no object
stream or cross-reference stream may inflate past PDF_MAX_INFLATE, and no single read past
PDF_MAX_READ (pypdf repairs a damaged file by reading all of it into memory).
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pypdf import PdfReader, apply_configuration
from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError
from pypdf.generic import ArrayObject, DictionaryObject

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

#: Whitespace a PDF may start with before its header (some generators print a newline first).
PDF_LEADING = b" \t\r\n\x0c"
#: Largest single read pypdf may make of an upload, and most bytes one stream may inflate to.
#: Object and cross-reference streams of real documents are far smaller; page content and images
#: are never inflated here.
PDF_MAX_READ = 16 * 1024 * 1024
PDF_MAX_INFLATE = 8 * 1024 * 1024
#: Most dictionaries the active-content check looks at (pages, annotations, actions, bookmarks).
PDF_MAX_VISITS = 200_000
#: A ZIP archive's end record must lie within its last 65,535 + 22 bytes (the longest comment).
ZIP_TAIL = 65_557
#: Actions that run code, start a program, send or fetch data, or open another file.
ACTIVE_ACTIONS = frozenset({"/JavaScript", "/Launch", "/SubmitForm", "/ImportData", "/GoToE", "/GoToR",
                            "/RichMediaExecute", "/Rendition"})
#: Annotations that carry a file, a program or media.
ACTIVE_ANNOTATIONS = frozenset({"/FileAttachment", "/RichMedia", "/Screen", "/Movie", "/Sound", "/3D"})

logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about odd producers are noise here


def sniff(head: bytes) -> str:
    """The content type of a file that starts with `head`, or raise DocumentRejected."""
    if not head:
        raise DocumentRejected(Reason.EMPTY)
    if head.lstrip(PDF_LEADING).startswith(b"%PDF-"):
        return PDF
    if b"%PDF-" in head[:PDF_WINDOW]:
        # Something else (HTML, SVG, a GIF, a ZIP holding a PDF) with a PDF further in: a polyglot.
        raise DocumentRejected(Reason.WRONG_TYPE)
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
    refused before pypdf, which would otherwise try to rebuild it by reading all of it. A file
    that is also a ZIP archive, or that carries active content, is refused too (see the module's
    docstring).
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - PDF_WINDOW))
        if b"%%EOF" not in fh.read():
            raise DocumentRejected(Reason.PDF_DAMAGED)
        fh.seek(max(0, size - ZIP_TAIL))
        if _zip_end_record(fh.read(), size):
            raise DocumentRejected(Reason.POLYGLOT)
        fh.seek(0)
        try:
            # A file object, not a path: given a path pypdf reads the whole file into memory.
            with apply_configuration(zlib_maximum_output_length=PDF_MAX_INFLATE,
                                     lzw_maximum_output_length=PDF_MAX_INFLATE,
                                     run_length_maximum_output_length=PDF_MAX_INFLATE,
                                     brotli_maximum_output_length=PDF_MAX_INFLATE,
                                     maximum_declared_stream_length=PDF_MAX_READ):
                reader = PdfReader(_BoundedReads(fh), strict=False)
                if reader.is_encrypted and not reader.decrypt(""):
                    # Only an owner password (printing or copying restrictions) opens with "": fine.
                    raise DocumentRejected(Reason.PDF_PASSWORD)
                pages = len(reader.pages)
                if pages >= 1 and _has_active_content(reader):
                    raise DocumentRejected(Reason.PDF_ACTIVE)
        except DocumentRejected:
            raise
        except FileNotDecryptedError as exc:
            raise DocumentRejected(Reason.PDF_PASSWORD) from exc
        except (PyPdfError, PdfReadError, ValueError, KeyError, TypeError, AttributeError, RecursionError,
                NotImplementedError, OSError, _TooMuchAtOnce, MemoryError) as exc:
            # pypdf raises more than its own errors on broken files; each means "it does not open".
            raise DocumentRejected(Reason.PDF_DAMAGED) from exc
    if pages < 1:
        raise DocumentRejected(Reason.PDF_DAMAGED)
    return pages


class _TooMuchAtOnce(Exception):
    """pypdf asked for more of the file in one read than a sound PDF needs."""


class _BoundedReads:
    """The upload's file as pypdf sees it: any one read of more than PDF_MAX_READ (including "the
    rest of it", which pypdf asks for to repair a damaged file) fails, so no PDF can make pypdf
    hold the whole of a large file in memory; a small damaged file may still be repaired."""

    def __init__(self, fh: IO[bytes]):
        self._fh = fh

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            position = self._fh.tell()
            size = self._fh.seek(0, 2) - position  # "the rest": fine for a small file
            self._fh.seek(position)
        if size > PDF_MAX_READ:
            raise _TooMuchAtOnce(size)
        return self._fh.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


def _zip_end_record(tail: bytes, size: int) -> bool:
    """Whether `tail` (the last bytes of a file of `size`) holds a plausible ZIP end record.

    The signature alone turns up by chance in compressed data once in 4 billion bytes; a real end
    record also says it is on disk 0 and that its central directory ends before it.
    """
    start = 0
    while (at := tail.find(b"PK\x05\x06", start)) != -1:
        start = at + 1
        record = tail[at:at + 22]
        if len(record) < 22:
            continue
        disk, cd_disk, on_disk, total, cd_size, _cd_offset, _comment = struct.unpack("<HHHHIIH", record[4:])
        position = size - len(tail) + at
        if disk == cd_disk == 0 and on_disk == total and cd_size <= position and cd_size >= 46 * total:
            return True
    return False


def _has_active_content(reader: PdfReader) -> bool:
    """Scripts, program launches, form submission, attached files or XFA anywhere a reader looks.

    Walks the catalog, the pages' actions and annotations, and the bookmarks (a bookmark can run a
    script too); dictionaries only, never page content or images.
    """
    visits = iter(range(PDF_MAX_VISITS))

    def visit() -> None:
        if next(visits, None) is None:
            raise _TooMuchAtOnce("too many objects to check")

    def action_is_active(action: Any, depth: int = 0) -> bool:
        action = _resolve(action)
        if isinstance(action, ArrayObject):  # a list of actions (/Next), or a destination
            return any(action_is_active(item, depth + 1) for item in action if depth < 32)
        if not isinstance(action, DictionaryObject):
            return False
        visit()
        if "/JS" in action or action.get("/S") in ACTIVE_ACTIONS:
            return True
        return depth < 32 and "/Next" in action and action_is_active(action["/Next"], depth + 1)

    def actions_are_active(triggers: Any) -> bool:
        triggers = _resolve(triggers)
        return isinstance(triggers, DictionaryObject) and any(action_is_active(a) for a in triggers.values())

    root = _resolve(reader.trailer.get("/Root"))
    if not isinstance(root, DictionaryObject):
        return False
    names = _resolve(root.get("/Names"))
    if isinstance(names, DictionaryObject) and ("/JavaScript" in names or "/EmbeddedFiles" in names):
        return True
    form = _resolve(root.get("/AcroForm"))
    if isinstance(form, DictionaryObject) and "/XFA" in form:
        return True
    if action_is_active(root.get("/OpenAction")) or actions_are_active(root.get("/AA")):
        return True
    for page in reader.pages:
        visit()
        if actions_are_active(page.get("/AA")):
            return True
        for annotation in _resolve(page.get("/Annots")) or []:
            annotation = _resolve(annotation)
            if not isinstance(annotation, DictionaryObject):
                continue
            visit()
            if annotation.get("/Subtype") in ACTIVE_ANNOTATIONS or action_is_active(annotation.get("/A")) or \
                    actions_are_active(annotation.get("/AA")):
                return True
    outlines = _resolve(root.get("/Outlines"))
    return isinstance(outlines, DictionaryObject) and any(
        action_is_active(item.get("/A")) for item in _outline_items(outlines, visit))


def _outline_items(outlines: DictionaryObject, visit) -> Iterator[DictionaryObject]:
    """Every bookmark, depth first, each once (a crafted outline may loop)."""
    seen: set[int] = set()
    pending = [outlines.get("/First")]
    while pending:
        reference = pending.pop()
        key = getattr(reference, "idnum", None)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        item = _resolve(reference)
        if not isinstance(item, DictionaryObject):
            continue
        visit()
        yield item
        pending.extend(x for x in (item.get("/Next"), item.get("/First")) if x is not None)


def _resolve(value: Any) -> Any:
    with contextlib.suppress(AttributeError):
        return value.get_object()
    return value
