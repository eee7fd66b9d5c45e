"""Photos and images: refuse bombs and bad photos, and store a clean, upright JPEG.

Every image is decoded and re-encoded, so nothing of the original file survives but its pixels:
no EXIF (GPS position, camera serial, time), no XMP, no comments, no embedded thumbnails. The
EXIF orientation is applied first, so the stored photo is upright in every viewer.

Photos (JPEG and HEIC: what cameras make) are also checked for blur (variance of the
Laplacian) and darkness (mean brightness) on a greyscale copy scaled to ANALYSIS_SIDE pixels,
so the person can take the photo again at once. PNGs are screenshots and scans: they are
cleaned the same way but not judged as photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pillow_heif
from PIL import ExifTags, Image, ImageFile, ImageFilter, ImageStat

from app.documents.errors import DocumentRejected, Reason
from app.documents.filetypes import HEIC, JPEG, PNG
from app.documents.settings import ANALYSIS_SIDE, Settings

pillow_heif.register_heif_opener()

#: Pillow's format names for each content type we accept as an image.
FORMATS = {JPEG: "JPEG", PNG: "PNG", HEIC: "HEIF"}
PHOTO_TYPES = (JPEG, HEIC)
#: The discrete Laplacian, divided by 8 and offset by 128 so every value fits in an 8-bit image
#: (its range is -1020..1020); the variance is scaled back by 8 * 8.
LAPLACIAN = ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], scale=8, offset=128)


@dataclass(frozen=True)
class CleanImage:
    width: int
    height: int
    #: Mean brightness and variance of the Laplacian of the analysis copy (None for non-photos).
    brightness: float | None = None
    sharpness: float | None = None


def laplacian_variance(grey: Image.Image) -> float:
    """How much fine detail a greyscale image has: low means blurred."""
    if grey.width < 3 or grey.height < 3:
        return 0.0
    edges = grey.filter(LAPLACIAN).crop((1, 1, grey.width - 1, grey.height - 1))  # the border is not filtered
    return ImageStat.Stat(edges).var[0] * 64


def brightness(grey: Image.Image) -> float:
    return ImageStat.Stat(grey).mean[0]


def normalise(source: Path, target: Path, content_type: str, limits: Settings) -> CleanImage:
    """Check the image at `source` and write the clean JPEG to `target`, or raise DocumentRejected.

    Memory: the decoded image, and one copy of it at most while it is made resizable; it is scaled
    down before it is turned upright and made RGB, so those copies are of the small image.
    """
    # WeasyPrint sets Pillow's process-wide LOAD_TRUNCATED_IMAGES on import, which would let a
    # half-sent photo decode as grey. An upload is never allowed to be truncated.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    side = limits.DOCUMENTS_MAX_IMAGE_SIDE
    try:
        with Image.open(source, formats=[FORMATS[content_type]]) as original:
            if original.width * original.height > limits.DOCUMENTS_MAX_IMAGE_PIXELS:
                raise DocumentRejected(Reason.TOO_MANY_PIXELS)  # decided from the header, before decoding
            if content_type == JPEG:
                # Let the JPEG decoder scale down by 1/2, 1/4 or 1/8 when the photo is much larger
                # than what is stored: less memory and time, the same result.
                original.draft("RGB", _fit(original.size, side))
            original.load()
            transpose = _orientation(original)
            pixels = _resizable(original)
            if pixels is not original:
                original.close()  # frees the decoded pixels: only the resizable copy is needed now
            pixels.thumbnail((side, side), Image.Resampling.LANCZOS)
            if transpose is not None:
                pixels = pixels.transpose(transpose)
            pixels = _rgb(pixels)
            if pixels is original:
                pixels = pixels.copy()  # the (now small) pixels must outlive the file, closed below
    except DocumentRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise DocumentRejected(Reason.TOO_MANY_PIXELS) from exc
    except (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError, TypeError, MemoryError) as exc:
        # Pillow reports truncated and malformed files through all of these.
        raise DocumentRejected(Reason.IMAGE_DAMAGED) from exc
    measured = CleanImage(pixels.width, pixels.height)
    if content_type in PHOTO_TYPES:
        measured = _judge(pixels, limits)
    # Nothing of the original's info (EXIF, XMP, ICC, comments) goes into the stored file: Pillow's
    # JPEG writer takes only the comment from it, and only the arguments below otherwise.
    pixels.info = {}
    pixels.save(target, "JPEG", quality=limits.DOCUMENTS_JPEG_QUALITY, optimize=True)
    return measured


#: EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose).
ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """The turn that makes the photo upright; none when its EXIF is missing or unreadable (the
    EXIF is dropped anyway, so a malformed block costs the orientation, never the upload)."""
    try:
        return ORIENTATIONS.get(image.getexif().get(ExifTags.Base.Orientation))
    except Exception:  # Pillow's EXIF reader raises all sorts on crafted blocks
        return None


def _resizable(image: Image.Image) -> Image.Image:
    """The image in a mode Pillow resamples smoothly (1-bit and palette images only resize coarsely)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda value: value / 256).convert("L")
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        return image.convert("RGB")  # CMYK and YCbCr scans, LAB
    return image


def _judge(pixels: Image.Image, limits: Settings) -> CleanImage:
    grey = pixels.convert("L")
    grey.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BILINEAR)
    light = brightness(grey)
    if light < limits.DOCUMENTS_DARK_THRESHOLD:
        raise DocumentRejected(Reason.TOO_DARK)  # before blur: a dark photo has little detail either
    detail = laplacian_variance(grey)
    if detail < limits.DOCUMENTS_BLUR_THRESHOLD:
        raise DocumentRejected(Reason.BLURRED)
    return CleanImage(pixels.width, pixels.height, light, detail)


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, side / max(width, height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def _rgb(image: Image.Image) -> Image.Image:
    """Three 8-bit channels; transparency becomes white paper, not black."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGB", rgba.size, "white")
        paper.paste(rgba, mask=rgba.getchannel("A"))
        return paper
    return image.convert("RGB")
