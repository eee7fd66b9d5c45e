"""Documents without a database: the file makers the other document tests use, and unit tests of
the encryption format, the content sniffing and the photo checks.

Every test file is made here in code (no binary fixtures in the repository).
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from PIL import ExifTags, Image, ImageDraw, ImageFilter, ImageFont
from pypdf import PdfWriter

from app import create_app
from app.documents import encryption, filetypes, imaging
from app.documents.errors import DocumentRejected, Reason
from app.documents.settings import Settings
from tests.conftest import config_for


@pytest.fixture
def app(tmp_path):
    """An app for its configuration only: these tests touch no database, so they run once."""
    return create_app(config_for("sqlite://", tmp_path))


# File makers ---------------------------------------------------------------------------------

def pdf_bytes(pages: int = 1, *, title: str | None = None, password: str | None = None) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)
    if title:
        writer.add_metadata({"/Title": title})  # stored as plain text in the file
    if password:
        writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def big_pdf(megabytes: float, *, title: str | None = None) -> bytes:
    """A valid PDF of about `megabytes`: pages of incompressible photo-like noise."""
    side = 700
    pages, total = [], 0
    while total < megabytes * 1_000_000:
        page = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        pages.append(page)
        total += side * side * 3 // 2  # JPEG of noise at quality 95: about half the raw size
    out = io.BytesIO()
    pages[0].save(out, "PDF", save_all=True, append_images=pages[1:], quality=95)
    if title is None:
        return out.getvalue()
    writer = PdfWriter(clone_from=io.BytesIO(out.getvalue()))
    writer.add_metadata({"/Title": title})  # plain text in the file (letters and digits are not escaped)
    titled = io.BytesIO()
    writer.write(titled)
    return titled.getvalue()


def page_image(size: tuple[int, int] = (1200, 1600), *, blur: float = 0, dim: float = 1.0) -> Image.Image:
    """A photographed letter: dark lines of text on light paper, with a red mark at the top left."""
    image = Image.new("RGB", size, (236, 233, 226))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, size[0] // 40))
    for y in range(size[1] // 10, size[1] - size[1] // 10, max(20, size[0] // 28)):
        draw.text((size[0] // 12, y), "Summary of care record: diagnosis, medication, 12/03/2021", fill=(30, 30, 35),
                  font=font)
    draw.rectangle((0, 0, size[0] // 8, size[1] // 8), fill=(220, 20, 20))
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    if dim != 1.0:
        image = image.point(lambda value: int(value * dim))
    return image


def gps_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (51.0, 27.0, 15.5),
        ExifTags.GPS.GPSLongitudeRef: "W", ExifTags.GPS.GPSLongitude: (2.0, 35.0, 48.2),
    }
    return exif


def jpeg_bytes(image: Image.Image | None = None, *, exif: Image.Exif | None = None, quality: int = 90) -> bytes:
    out = io.BytesIO()
    (image or page_image()).save(out, "JPEG", quality=quality, exif=exif.tobytes() if exif else b"")
    return out.getvalue()


def png_bytes(image: Image.Image | None = None) -> bytes:
    out = io.BytesIO()
    (image or page_image((300, 400))).save(out, "PNG")
    return out.getvalue()


def heic_bytes(image: Image.Image | None = None) -> bytes:
    out = io.BytesIO()
    (image or page_image()).save(out, "HEIF", quality=90)  # pillow-heif's encoder (imaging registers it)
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A real decompression bomb: a 1-bit PNG of `width` x `height` white pixels, compressed
    row by row so making it needs no more memory than one row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def executable_bytes() -> bytes:
    """The start of a Windows program (what a renamed .exe looks like inside)."""
    return b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + os.urandom(4000)


# The encryption format -------------------------------------------------------------------------

KEY = bytes(range(32))


def _sealed(data: bytes, file_id: str = "abc123") -> bytes:
    return b"".join(encryption.seal(KEY, file_id, [data[i:i + 10_000] for i in range(0, len(data), 10_000)] or [b""]))


def _unsealed(blob: bytes, file_id: str = "abc123") -> bytes:
    return b"".join(encryption.unseal(KEY, file_id, io.BytesIO(blob).read))


@pytest.mark.parametrize("size", [0, 1, encryption.SEGMENT_BYTES - 1, encryption.SEGMENT_BYTES,
                                  encryption.SEGMENT_BYTES + 1, 3 * encryption.SEGMENT_BYTES + 17])
def test_sealed_files_round_trip_at_every_segment_boundary(size):
    data = os.urandom(size)
    blob = _sealed(data)
    # Long plaintext never shows in the sealed file (a byte or two could, by chance, in any random bytes).
    assert size < 16 or data not in blob
    assert _unsealed(blob) == data


def test_sealed_file_refuses_another_file_id():
    blob = _sealed(b"x" * 100_000, "first")
    with pytest.raises(encryption.Corrupt):
        _unsealed(blob, "second")


def test_sealed_file_refuses_truncation_at_a_segment_boundary():
    data = os.urandom(3 * encryption.SEGMENT_BYTES + 5)
    blob = _sealed(data)
    cut = encryption.HEADER_BYTES + 2 * (encryption.SEGMENT_BYTES + encryption.TAG_BYTES)
    with pytest.raises(encryption.Corrupt):
        _unsealed(blob[:cut])


def test_sealed_file_refuses_reordered_segments():
    data = os.urandom(3 * encryption.SEGMENT_BYTES + 5)
    blob = _sealed(data)
    seg = encryption.SEGMENT_BYTES + encryption.TAG_BYTES
    head, first, second = blob[:encryption.HEADER_BYTES], encryption.HEADER_BYTES, encryption.HEADER_BYTES + seg
    swapped = head + blob[second:second + seg] + blob[first:first + seg] + blob[second + seg:]
    with pytest.raises(encryption.Corrupt):
        _unsealed(swapped)


def test_sealed_file_refuses_a_flipped_bit():
    blob = bytearray(_sealed(os.urandom(1000)))
    blob[encryption.HEADER_BYTES + 10] ^= 0x01
    with pytest.raises(encryption.Corrupt):
        _unsealed(bytes(blob))


def test_upload_records_decrypt_in_order_and_refuse_a_wrong_offset():
    pieces = [os.urandom(100), os.urandom(50)]
    records = [record for record, _ in encryption.seal_records(KEY, "up1", 0, pieces)]
    assert b"".join(encryption.open_records(KEY, "up1", io.BytesIO(b"".join(records)).read, 150)) == b"".join(pieces)
    shifted = [record for record, _ in encryption.seal_records(KEY, "up1", 7, pieces)]
    with pytest.raises(encryption.Corrupt):
        list(encryption.open_records(KEY, "up1", io.BytesIO(b"".join(shifted)).read, 150))


# Sniffing by content -----------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "expected"), [
    (pdf_bytes(), filetypes.PDF), (jpeg_bytes(page_image((50, 50))), filetypes.JPEG), (png_bytes(), filetypes.PNG),
    (heic_bytes(page_image((64, 64))), filetypes.HEIC),
])
def test_accepted_types_are_recognised_by_their_content(content, expected):
    assert filetypes.sniff(content[:1024]) == expected


@pytest.mark.parametrize(("content", "reason"), [
    (executable_bytes(), Reason.PROGRAM), (b"\x7fELF\x02\x01\x01" + b"\x00" * 60, Reason.PROGRAM),
    (b"GIF89a" + b"\x00" * 60, Reason.WRONG_TYPE), (b"Dear Doctor, please find my letter", Reason.WRONG_TYPE),
    (b"PK\x03\x04" + b"\x00" * 60, Reason.WRONG_TYPE), (b"", Reason.EMPTY),
])
def test_other_content_is_refused_whatever_its_name(app, content, reason):
    with app.app_context(), pytest.raises(DocumentRejected) as refused:
        filetypes.sniff(content)
    assert refused.value.reason is reason


# Photo checks ------------------------------------------------------------------------------------

def _clean(app, tmp_path, content: bytes, content_type: str):
    source, target = tmp_path / "in", tmp_path / "out.jpg"
    source.write_bytes(content)
    with app.app_context():
        return imaging.normalise(source, target, content_type, Settings()), target


def test_sharpness_and_brightness_separate_good_and_bad_photos(app, tmp_path):
    sharp, _ = _clean(app, tmp_path, jpeg_bytes(page_image()), filetypes.JPEG)
    assert sharp.sharpness > 4 * Settings.DOCUMENTS_BLUR_THRESHOLD
    assert sharp.brightness > 4 * Settings.DOCUMENTS_DARK_THRESHOLD
    with app.app_context():
        with pytest.raises(DocumentRejected) as blurred:
            _clean(app, tmp_path, jpeg_bytes(page_image(blur=6)), filetypes.JPEG)
        with pytest.raises(DocumentRejected) as dark:
            _clean(app, tmp_path, jpeg_bytes(page_image(dim=0.1)), filetypes.JPEG)
    assert blurred.value.reason is Reason.BLURRED
    assert dark.value.reason is Reason.TOO_DARK


def test_laplacian_variance_matches_the_textbook_definition():
    image = page_image((120, 90)).convert("L")
    pixels = image.load()
    values = [pixels[x - 1, y] + pixels[x + 1, y] + pixels[x, y - 1] + pixels[x, y + 1] - 4 * pixels[x, y]
              for y in range(1, image.height - 1) for x in range(1, image.width - 1)]
    mean = sum(values) / len(values)
    expected = sum((v - mean) ** 2 for v in values) / len(values)
    assert imaging.laplacian_variance(image) == pytest.approx(expected, rel=0.01)


def test_transparent_png_becomes_white_paper_not_black(app, tmp_path):
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    _, target = _clean(app, tmp_path, png_bytes(image), filetypes.PNG)
    with Image.open(target) as stored:
        assert stored.convert("L").getpixel((20, 20)) > 240


# The upload macro other domains import ------------------------------------------------------------

def test_the_upload_macro_offers_a_selfie_camera_and_hands_back_the_document_id(app):
    from flask import render_template_string

    source = ('{% from "documents/_upload.html" import upload_control %}'
              '{{ upload_control("selfie", "A photo of your face", kind="selfie", camera="user", picker=False, '
              'result_name="selfie_document_id") }}')
    with app.test_request_context():
        html = render_template_string(source)

    assert 'capture="user"' in html and 'accept="image/*"' in html
    assert 'data-module="nhsuk-file-upload"' not in html, "no file picker for a selfie"
    assert 'data-kind="selfie"' in html and 'data-create-url="/documents/uploads"' in html
    assert '<input type="hidden" name="selfie_document_id" value="" data-upload-result>' in html
    assert 'data-max-bytes="50000000"' in html


def test_a_truncated_photo_is_refused_even_after_weasyprint_loosened_pillow(app, tmp_path):
    """WeasyPrint sets Pillow's LOAD_TRUNCATED_IMAGES on import; uploads must not inherit it."""
    import weasyprint  # noqa: F401  (the import is the point: it flips the process-wide flag)
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = True
    source = tmp_path / "half.jpg"
    source.write_bytes(jpeg_bytes()[:4000])
    with app.app_context(), pytest.raises(DocumentRejected) as refused:
        imaging.normalise(source, tmp_path / "out.jpg", filetypes.JPEG, Settings())
    assert refused.value.reason is Reason.IMAGE_DAMAGED
