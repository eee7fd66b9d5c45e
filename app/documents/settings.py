"""The documents domain's limits and thresholds, read from the app's configuration.

Each has a default here that suits a phone photo or a GP's PDF; the configuration (an
environment variable of the same name with the `VERITY_` prefix, see the README table) can
change it. The blur and darkness thresholds are measured on a copy of the photo scaled to
`ANALYSIS_SIDE` pixels on its longer side, so they mean the same for a 12 MP and a 48 MP camera.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from flask import current_app

#: The longer side of the greyscale copy the blur and darkness checks look at.
ANALYSIS_SIDE = 1024


@dataclass(frozen=True)
class Settings:
    #: Largest file accepted, in bytes ("50 MB" as a phone shows it: decimal megabytes).
    DOCUMENTS_MAX_BYTES: int = 50_000_000
    #: Largest piece of a chunked upload in one request; must stay under MAX_CONTENT_LENGTH.
    DOCUMENTS_CHUNK_BYTES: int = 1024 * 1024
    #: Images with more pixels than this are refused before they are decoded (decompression
    #: bombs). 50 million admits a 48-megapixel phone camera.
    DOCUMENTS_MAX_IMAGE_PIXELS: int = 50_000_000
    #: Stored photos are scaled down to this many pixels on their longer side (plenty to read a
    #: letter, a quarter of the storage of a 48 MP original).
    DOCUMENTS_MAX_IMAGE_SIDE: int = 4096
    #: JPEG quality of the re-encoded photo.
    DOCUMENTS_JPEG_QUALITY: int = 88
    #: Variance of the Laplacian below which a photo is refused as blurred. Sharp photos of a
    #: printed page score in the hundreds or thousands; camera shake brings them under 20.
    DOCUMENTS_BLUR_THRESHOLD: float = 40.0
    #: Mean brightness (0 black to 255 white) below which a photo is refused as too dark.
    DOCUMENTS_DARK_THRESHOLD: float = 35.0
    #: Unfinished uploads are dropped (and their partial data deleted) after this many hours.
    DOCUMENTS_UPLOAD_EXPIRY_HOURS: int = 24

    @property
    def max_megabytes(self) -> str:
        return f"{self.DOCUMENTS_MAX_BYTES / 1_000_000:g} MB"

    @property
    def max_megapixels(self) -> str:
        return f"{self.DOCUMENTS_MAX_IMAGE_PIXELS / 1_000_000:g} megapixels"


def current() -> Settings:
    """The settings of the running app: configured values over the defaults."""
    config: dict[str, Any] = current_app.config
    values = {f.name: type(getattr(Settings, f.name))(config[f.name]) for f in fields(Settings) if f.name in config}
    request_limit = config.get("MAX_CONTENT_LENGTH")
    if request_limit:
        # A chunk and its headers must fit in one request, whatever the request limit is set to.
        chunk = values.get("DOCUMENTS_CHUNK_BYTES", Settings.DOCUMENTS_CHUNK_BYTES)
        values["DOCUMENTS_CHUNK_BYTES"] = max(64 * 1024, min(chunk, int(request_limit) - 16 * 1024))
    return Settings(**values)
