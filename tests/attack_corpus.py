"""A corpus of hostile uploads, made in code (nothing binary is committed).

Each `Item` is one file a person could choose in an upload control: its bytes, the name the
browser sends, and what Verity must do with it:

- REFUSED: nothing is stored; the person reads a plain message saying what to do (the reason
  code is the one the app gives, see app/documents/errors.py);
- NEUTRALISED: the file is accepted, but what is kept and served back is harmless: a photo is
  re-rendered as a clean JPEG (no comment, EXIF, script or trailing bytes survive), a name is
  cleaned of folders, control and direction characters.

The generators build real specimens of each trick (a PDF that pypdf opens *and* zipfile opens,
an HTML page that a browser would run *and* that starts like a GIF), and `corpus()` checks a few
of them against the real parsers, so a refusal in the tests is a refusal of the real thing.

The request-body attacks (bodies far over the request limit, streamed without holding them in
memory) are `StreamedBody` and `multipart_stream`, used by tests/test_attack_corpus.py.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PIL import Image

from tests.test_documents_files import bomb_png, executable_bytes, heic_bytes, jpeg_bytes, page_image, png_bytes

REFUSED, NEUTRALISED = "refused", "neutralised"

SCRIPT = b"<script>alert(document.domain)</script>"
#: The EICAR anti-virus test string: every scanner reports it, and it does no harm.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@dataclass(frozen=True)
class Item:
    name: str
    filename: str
    make: Callable[[], bytes]
    expect: str
    #: The refusal's reason code (REFUSED), e.g. "wrong_type".
    reason: str | None = None
    #: What must never appear in anything stored or served back (NEUTRALISED).
    never: tuple[bytes, ...] = ()

    @property
    def content(self) -> bytes:
        return self.make()


# PDFs written by hand, so each trick is exactly where the test wants it --------------------------

def raw_pdf(catalog_extra: bytes = b"", page_extra: bytes = b"", extra_objects: tuple[bytes, ...] = (),
            *, prefix: bytes = b"", header: bytes = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", suffix: bytes = b"") -> bytes:
    """A one-page PDF: catalog 1, pages 2, page 3, then `extra_objects` as 4, 5, ...

    `prefix` goes before the header (a polyglot's other format), `suffix` after %%EOF.
    """
    objects = [b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b" >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] " + page_extra + b" >>",
               *extra_objects]
    out = bytearray(prefix + header)
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out) - len(prefix))  # offsets count from the header, as readers that find it do
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out) - len(prefix)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    return bytes(out) + suffix


def stream_object(data: bytes, dictionary: bytes = b"") -> bytes:
    return b"<< /Length %d " % len(data) + dictionary + b" >>\nstream\n" + data + b"\nendstream"


def pdf_javascript_open_action() -> bytes:
    return raw_pdf(b"/OpenAction 4 0 R", extra_objects=(b"<< /Type /Action /S /JavaScript /JS (app.alert(1)) >>",))


def pdf_javascript_name_tree() -> bytes:
    """Document-level JavaScript, with the action's name spelled with a #-escape (/J#61vaScript)."""
    return raw_pdf(b"/Names << /JavaScript 4 0 R >>",
                   extra_objects=(b"<< /Names [(init) 5 0 R] >>",
                                  b"<< /S /J#61vaScript /JS (this.exportDataObject({cName: 'a'})) >>"))


def pdf_launch_link() -> bytes:
    """A link over the whole page that starts a program."""
    return raw_pdf(page_extra=b"/Annots [4 0 R]", extra_objects=(
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 595 842] "
        b"/A << /S /Launch /F (cmd.exe) /Win << /F (cmd.exe) /P (/c calc) >> >> >>",))


def pdf_page_open_action() -> bytes:
    """A script that runs when the page opens (the page's additional actions)."""
    return raw_pdf(page_extra=b"/AA << /O << /S /JavaScript /JS 4 0 R >> >>",
                   extra_objects=(stream_object(b"app.launchURL('https://example.invalid/')"),))


def pdf_embedded_file() -> bytes:
    html = b"<html><body>" + SCRIPT + b"</body></html>"
    return raw_pdf(b"/Names << /EmbeddedFiles << /Names [(invoice.html) 4 0 R] >> >>", extra_objects=(
        b"<< /Type /Filespec /F (invoice.html) /EF << /F 5 0 R >> >>",
        stream_object(html, b"/Type /EmbeddedFile /Subtype /text#2Fhtml"),))


def pdf_benign_open_action() -> bytes:
    """Open at page 1, fitted to the window: the most common /OpenAction there is, and harmless."""
    return raw_pdf(b"/OpenAction [3 0 R /Fit]")


def pdf_flate_bomb_object_stream() -> bytes:
    """The page tree inside an object stream that inflates to 60 MB: a reader that opens the PDF must
    inflate it (pypdf's own limit is 75 MB). About 60 KB on the wire."""
    pages = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"
    table = b"2 0 3 %d " % len(pages)
    body = table + pages + page
    compressor = zlib.compressobj(9)
    padding = b" " * (1024 * 1024)
    packed = compressor.compress(body) + b"".join(compressor.compress(padding) for _ in range(60))
    packed += compressor.flush()
    objstm = stream_object(packed, b"/Type /ObjStm /N 2 /First %d /Filter /FlateDecode" % len(table))
    header = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    catalog = b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    stm = b"4 0 obj\n" + objstm + b"\nendobj\n"
    out = bytearray(header)
    catalog_at = len(out)
    out += catalog
    stm_at = len(out)
    out += stm
    # A cross-reference stream (what files with object streams use): type 2 entries point into object 4.
    rows = [b"\x00" + struct.pack(">I", 0) + b"\xff\xff", b"\x01" + struct.pack(">I", catalog_at) + b"\x00\x00",
            b"\x02" + struct.pack(">I", 4) + b"\x00\x00", b"\x02" + struct.pack(">I", 4) + b"\x00\x01",
            b"\x01" + struct.pack(">I", stm_at) + b"\x00\x00"]
    xref_at = len(out)
    xref_data = zlib.compress(b"".join(rows) + b"\x01" + struct.pack(">I", xref_at) + b"\x00\x00")
    out += b"5 0 obj\n" + stream_object(xref_data, b"/Type /XRef /Size 6 /W [1 4 2] /Root 1 0 R "
                                                   b"/Filter /FlateDecode") + b"\nendobj\n"
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def pdf_flate_bomb_page_content() -> bytes:
    """A page whose content stream inflates to 200 MB (200 KB on the wire). Counting pages and
    looking for scripts never inflates page content: accepted, and memory stays flat."""
    compressor = zlib.compressobj(9)
    zeros = b"0" * (1024 * 1024)
    packed = b"".join(compressor.compress(zeros) for _ in range(200)) + compressor.flush()
    return raw_pdf(page_extra=b"/Contents 4 0 R",
                   extra_objects=(stream_object(packed, b"/Filter /FlateDecode"),))


def pdf_zip_polyglot() -> bytes:
    """A PDF that is also a ZIP archive (holding an HTML page): the ZIP sits in a stream of the PDF,
    and its end record's comment runs over the PDF's cross-reference table to the end of the file."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("index.html", b"<html>" + SCRIPT + b"</html>")
    data = archive.getvalue()
    assert data[-22:-18] == b"PK\x05\x06"
    body = raw_pdf(page_extra=b"/Contents 4 0 R", extra_objects=(stream_object(data[:-2] + b"\x00\x00"),))
    # Make the end record's comment length cover everything after it, so both readers accept the file.
    end_record = body.index(data[-22:-2])
    after = len(body) - (end_record + 22)
    return body[:end_record + 20] + struct.pack("<H", after) + body[end_record + 22:]


def html_pdf_polyglot() -> bytes:
    """An HTML page that runs a script and then carries a whole PDF in a comment: the PDF header sits
    inside the first 1024 bytes, where lenient readers look for it."""
    return raw_pdf(prefix=b"<!doctype html><html><body>" + SCRIPT + b"<!--\n", suffix=b"-->\n</body></html>\n")


def gif_html_pdf_polyglot() -> bytes:
    """GIF, HTML and PDF at once: a GIF header, a script after it, then a PDF."""
    gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,"
    gif += b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    return raw_pdf(prefix=gif + b"<html>" + SCRIPT + b"<!--", suffix=b"-->")


def svg_pdf_polyglot() -> bytes:
    return raw_pdf(prefix=b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">' + SCRIPT + b"<!--\n",
                   suffix=b"--></svg>")


def truncated(content: bytes, keep: float = 0.5) -> bytes:
    return content[:int(len(content) * keep)]


def big_pdf_bytes(megabytes: float) -> bytes:
    """A valid PDF of about `megabytes`: one page and an incompressible padding stream."""
    padding = os.urandom(int(megabytes * 1_000_000))
    return raw_pdf(extra_objects=(stream_object(padding),))


def pdf_cut_and_patched(megabytes: float = 24) -> bytes:
    """A PDF cut in the middle, with a trailer and "%%EOF" put back so it passes a quick look, and a
    startxref that points nowhere: pypdf repairs such a file by reading all of it into memory (and
    does open it: the page is still there)."""
    pieces = tuple(stream_object(os.urandom(1_000_000)) for _ in range(int(2 * megabytes)))
    whole = raw_pdf(extra_objects=pieces)
    return truncated(whole) + b"\ntrailer\n<< /Root 1 0 R /Size %d >>\nstartxref\n123\n%%%%EOF\n" % (len(pieces) + 4)


# Images -------------------------------------------------------------------------------------------

def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _after_soi(jpeg: bytes, *segments: bytes) -> bytes:
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def sharp_jpeg(size: tuple[int, int] = (900, 1200)) -> bytes:
    return jpeg_bytes(page_image(size))


def jpeg_html_comment() -> bytes:
    """A real photo with an HTML page in its comment segment, and more HTML after its end marker."""
    page = b"<html><body>" + SCRIPT + b"</body></html>"
    return _after_soi(sharp_jpeg(), _segment(0xFE, page)) + page


def png_html_text() -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Description", "<html><body><script>alert(document.domain)</script></body></html>")
    out = io.BytesIO()
    page_image((400, 500)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def _tiff(entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0) -> bytes:
    """A little-endian TIFF header and one IFD; each entry (tag, type, count, 4-byte value/offset)."""
    ifd = struct.pack("<H", len(entries))
    ifd += b"".join(struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", next_ifd)


def jpeg_oversized_exif() -> bytes:
    """A segment as large as JPEG allows (64 KB) of EXIF: a GPS position, then a maker note that
    fills the rest with HTML."""
    maker_note = (b"<html>" + SCRIPT + b"</html>") * 1000
    entries_size = 2 + 4 * 12 + 4
    gps_at = 8 + entries_size
    gps = struct.pack("<H", 2) + struct.pack("<HHI", 1, 2, 2) + b"N\x00\x00\x00" + \
        struct.pack("<HHI", 3, 2, 2) + b"W\x00\x00\x00" + struct.pack("<I", 0)
    note_at = gps_at + len(gps)
    room = 65533 - 2 - 6 - note_at
    maker_note = maker_note[:room]
    tiff = _tiff([(0x0112, 3, 1, struct.pack("<HH", 1, 0)), (0x010F, 2, 4, b"Cam\x00"),
                  (0x8825, 4, 1, struct.pack("<I", gps_at)), (0x927C, 7, len(maker_note), struct.pack("<I", note_at))])
    payload = b"Exif\x00\x00" + tiff + gps + maker_note
    assert len(payload) + 2 <= 65535
    return _after_soi(sharp_jpeg(), _segment(0xE1, payload))


def jpeg_malformed_exif() -> bytes:
    """EXIF whose description claims two billion bytes, and whose next-IFD pointer loops to itself."""
    tiff = _tiff([(0x010E, 2, 0x7FFFFFFF, struct.pack("<I", 0x7FFFFFF0)), (0x0112, 3, 1, struct.pack("<HH", 6, 0))],
                 next_ifd=8)
    return _after_soi(sharp_jpeg(), _segment(0xE1, b"Exif\x00\x00" + tiff))


def jpeg_many_metadata_segments(megabytes: int = 8) -> bytes:
    """Megabytes of application and comment segments before the picture (each up to 64 KB)."""
    piece = _segment(0xEB, b"\x00" * 65000) + _segment(0xFE, b"<html>" + b"x" * 64000)
    count = megabytes * 1_000_000 // len(piece)
    return _after_soi(sharp_jpeg(), piece * count)


def png_pixel_flood() -> bytes:
    """A PNG whose header says 100,000 x 100,000 pixels (10 gigapixels), with one tiny row of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 301)) + \
        chunk(b"IEND", b"")


def jpeg_pixel_flood() -> bytes:
    """A small JPEG whose frame header is rewritten to say 65,500 x 65,500 pixels."""
    data = bytearray(jpeg_bytes(page_image((64, 64))))
    index = 2
    while index < len(data):
        marker, length = data[index + 1], struct.unpack(">H", data[index + 2:index + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[index + 5:index + 9] = struct.pack(">HH", 65500, 65500)
            return bytes(data)
        index += 2 + length
    raise AssertionError("no frame header in the JPEG")


def png_near_the_pixel_limit() -> bytes:
    """A 1-bit PNG of 7,000 x 7,000 pixels (49 megapixels, under the 50 MP limit): a few kilobytes
    that decode to a large image. Accepted (a high-resolution scan is a real thing), memory bounded."""
    return bomb_png(7000, 7000)


def heic_photo() -> bytes:
    return heic_bytes(page_image((640, 800)))


# Other kinds of file ------------------------------------------------------------------------------

def gif_html_polyglot() -> bytes:
    """The classic GIFAR-style trick: a valid GIF header whose bytes also open a script comment."""
    return b"GIF89a/*\x01\x00\x01\x00\x00\xff\xff\xff,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x00;*/=1;" + \
        b"<html><body>" + SCRIPT + b"</body></html>"


def svg_with_script() -> bytes:
    return (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)" width="10" '
            b'height="10">' + SCRIPT + b"<rect width='10' height='10'/></svg>")


def html_page() -> bytes:
    return b"<!doctype html><html><head><title>Invoice</title></head><body>" + SCRIPT + b"</body></html>"


def zip_archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zipped:
        zipped.writestr("letter.pdf", raw_pdf())
        zipped.writestr("run.html", html_page())
    return out.getvalue()


def plain_pdf() -> bytes:
    return raw_pdf()


def eicar_pdf() -> bytes:
    """A valid PDF that carries the EICAR test string in a stream (for the virus-scanner tests)."""
    return raw_pdf(page_extra=b"/Contents 4 0 R", extra_objects=(stream_object(EICAR),))


# The corpus ---------------------------------------------------------------------------------------

#: Names a browser could send (or a crafted request can): folders, NUL, control characters, a
#: right-to-left override that makes "fdp.exe" read as "exe.pdf", a header injection.
HOSTILE_NAMES = {
    "name_dot_dot_slash": "../../../../etc/passwd.pdf",
    "name_backslashes": "..\\..\\Windows\\System32\\drivers\\etc\\hosts.pdf",
    "name_nul": "letter.pdf\x00.html",
    "name_rtl_override": "report\u202efdp.exe",
    "name_control_characters": "scan\x1b[31m\x07\r\nX-Injected: 1.pdf",
    "name_quotes": 'a"; filename="evil.html',
    "name_bidi_isolates": "x\u2066\u2067\u2069\u200f.pdf",
    "name_line_separator": "a\u2028b\u2029c.pdf",
    "name_only_dots": "..",
    "name_long": "a" * 250 + ".pdf",
    "name_double_extension": "invoice.pdf.html",
}


def corpus() -> list[Item]:
    items = [
        # Polyglots and formats that browsers run.
        Item("gif_html_polyglot", "avatar.gif", gif_html_polyglot, REFUSED, "wrong_type"),
        Item("gif_html_pdf_polyglot", "avatar.pdf", gif_html_pdf_polyglot, REFUSED, "wrong_type"),
        Item("html_pdf_polyglot", "invoice.pdf", html_pdf_polyglot, REFUSED, "wrong_type"),
        Item("svg_pdf_polyglot", "scan.pdf", svg_pdf_polyglot, REFUSED, "wrong_type"),
        Item("pdf_zip_polyglot", "letter.pdf", pdf_zip_polyglot, REFUSED, "polyglot"),
        Item("svg_with_script", "scan.svg", svg_with_script, REFUSED, "wrong_type"),
        Item("html_double_extension", "invoice.pdf.html", html_page, REFUSED, "wrong_type"),
        Item("html_named_pdf", "letter.pdf", html_page, REFUSED, "wrong_type"),
        Item("zip_archive", "documents.zip", zip_archive, REFUSED, "wrong_type"),
        Item("program_named_jpg", "photo.jpg", executable_bytes, REFUSED, "program"),
        Item("empty_file", "empty.pdf", lambda: b"", REFUSED, "empty"),
        # PDFs with active content, bombs and damage.
        Item("pdf_javascript_open_action", "letter.pdf", pdf_javascript_open_action, REFUSED, "pdf_active"),
        Item("pdf_javascript_name_tree", "letter.pdf", pdf_javascript_name_tree, REFUSED, "pdf_active"),
        Item("pdf_launch_link", "letter.pdf", pdf_launch_link, REFUSED, "pdf_active"),
        Item("pdf_page_open_action", "letter.pdf", pdf_page_open_action, REFUSED, "pdf_active"),
        Item("pdf_embedded_file", "letter.pdf", pdf_embedded_file, REFUSED, "pdf_active"),
        Item("pdf_flate_bomb_object_stream", "letter.pdf", pdf_flate_bomb_object_stream, REFUSED, "pdf_damaged"),
        Item("pdf_flate_bomb_page_content", "letter.pdf", pdf_flate_bomb_page_content, NEUTRALISED),
        Item("pdf_truncated", "letter.pdf", lambda: truncated(big_pdf_bytes(0.3)), REFUSED, "pdf_damaged"),
        Item("pdf_cut_and_patched", "letter.pdf", pdf_cut_and_patched, REFUSED, "pdf_damaged"),
        Item("pdf_benign_open_action", "letter.pdf", pdf_benign_open_action, NEUTRALISED),
        # Images: floods, damage, and payloads in metadata.
        Item("png_pixel_flood", "scan.png", png_pixel_flood, REFUSED, "too_many_pixels"),
        Item("jpeg_pixel_flood", "photo.jpg", jpeg_pixel_flood, REFUSED, "too_many_pixels"),
        Item("png_near_the_pixel_limit", "scan.png", png_near_the_pixel_limit, NEUTRALISED),
        Item("jpeg_truncated", "photo.jpg", lambda: truncated(sharp_jpeg()), REFUSED, "image_damaged"),
        Item("png_truncated", "scan.png", lambda: truncated(png_bytes(page_image((300, 400)))), REFUSED,
             "image_damaged"),
        Item("heic_truncated", "photo.heic", lambda: truncated(heic_photo()), REFUSED, "image_damaged"),
        Item("jpeg_html_comment", "photo.jpg", jpeg_html_comment, NEUTRALISED, never=(b"<script", b"<html")),
        Item("png_html_text", "scan.png", png_html_text, NEUTRALISED, never=(b"<script", b"Description")),
        Item("jpeg_oversized_exif", "photo.jpg", jpeg_oversized_exif, NEUTRALISED,
             never=(b"<script", b"Exif", b"Cam\x00")),
        Item("jpeg_malformed_exif", "photo.jpg", jpeg_malformed_exif, NEUTRALISED, never=(b"Exif",)),
        Item("jpeg_many_metadata_segments", "photo.jpg", jpeg_many_metadata_segments, NEUTRALISED,
             never=(b"<html",)),
    ]
    items += [Item(key, name, plain_pdf, NEUTRALISED) for key, name in HOSTILE_NAMES.items()]
    return items


def by_name(name: str) -> Item:
    return next(item for item in corpus() if item.name == name)


def check_specimens() -> None:
    """The tricks are real: the polyglots open in both their formats (run by the corpus tests)."""
    from pypdf import PdfReader

    polyglot = pdf_zip_polyglot()
    with zipfile.ZipFile(io.BytesIO(polyglot)) as zipped:
        assert SCRIPT in zipped.read("index.html")
    assert len(PdfReader(io.BytesIO(polyglot)).pages) == 1
    for lenient in (html_pdf_polyglot(), gif_html_pdf_polyglot(), svg_pdf_polyglot(), pdf_cut_and_patched(1)):
        assert len(PdfReader(io.BytesIO(lenient)).pages) == 1
    for script in (pdf_javascript_open_action(), pdf_launch_link(), pdf_embedded_file(), pdf_benign_open_action()):
        assert len(PdfReader(io.BytesIO(script)).pages) == 1
    flood = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # Pillow's own bomb check would stop the header being read
    try:
        with Image.open(io.BytesIO(jpeg_pixel_flood())) as jpeg, Image.open(io.BytesIO(png_pixel_flood())) as png:
            assert jpeg.size == (65500, 65500) and png.size == (100_000, 100_000)
    finally:
        Image.MAX_IMAGE_PIXELS = flood
    with Image.open(io.BytesIO(jpeg_html_comment())) as commented:
        assert SCRIPT in commented.info.get("comment", b"")
    with Image.open(io.BytesIO(png_near_the_pixel_limit())) as near:
        assert near.size == (7000, 7000)


# Request bodies far over the limit, made as they are read ------------------------------------------

class StreamedBody(io.RawIOBase):
    """A request body of `size` bytes made as it is read: the head, `filler` repeated, the tail.

    The test client passes it to the app as wsgi.input without holding it, so the test measures
    what the app keeps of a 200 MB body, not what the test made.
    """

    def __init__(self, head: bytes, size: int, tail: bytes = b"", filler: bytes = b"A" * 65536):
        self._parts: Iterator[bytes] = self._generate(head, size, tail, filler)
        self._buffer = b""
        self.produced = 0

    @staticmethod
    def _generate(head: bytes, size: int, tail: bytes, filler: bytes) -> Iterator[bytes]:
        yield head
        remaining = size - len(head) - len(tail)
        while remaining > 0:
            piece = filler[:remaining]
            remaining -= len(piece)
            yield piece
        yield tail

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._parts)
            except StopIteration:
                return 0
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        self.produced += count
        return count


BOUNDARY = "----verity-attack-corpus-boundary"


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> bytes:
    """A multipart/form-data body written byte for byte (the test client would tidy hostile names)."""
    out = bytearray()
    for name, value in fields.items():
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").encode()
        out += value.encode() + b"\r\n"
    for name, (filename, data) in files.items():
        raw_name = filename.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "%0D").replace("\n", "%0A")
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"").encode()
        out += raw_name.encode("utf-8", "surrogatepass") + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        out += data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def multipart_stream(fields: dict[str, str], file_field: str, size: int) -> StreamedBody:
    """A multipart body of `size` bytes whose one file is mostly filler."""
    head = multipart(fields, {})[:-len(f"--{BOUNDARY}--\r\n")]
    head += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"huge.pdf\"\r\n"
             "Content-Type: application/pdf\r\n\r\n%PDF-1.7\n").encode()
    return StreamedBody(head, size, f"\r\n--{BOUNDARY}--\r\n".encode())


MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
