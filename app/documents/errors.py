"""Why a file is refused, in words that tell the person what to do next."""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    """Each refusal: a short code (for the audit trail and the client) and the message shown."""

    EMPTY = ("empty", "The selected file is empty. Choose the file that has your document in it.")
    TOO_LARGE = ("too_large", "The selected file must be smaller than {max_size}. If it is a scan, scan it again "
                              "at a lower resolution, or send it as separate pages.")
    WRONG_TYPE = ("wrong_type", "The selected file must be a PDF, JPG, PNG or HEIC. Take a photo of the document "
                                "instead, or save it as a PDF.")
    PROGRAM = ("program", "The selected file is a program, not a document. Choose a PDF or a photo of your "
                          "document.")
    PDF_PASSWORD = ("pdf_password", "This PDF is protected with a password, so the clinic cannot open it. Open it, "
                                    "save or print it as a new PDF without a password, and upload that copy.")
    PDF_DAMAGED = ("pdf_damaged", "This PDF is damaged or incomplete, so it cannot be opened. Download or scan it "
                                  "again and upload the new copy.")
    IMAGE_DAMAGED = ("image_damaged", "This image is damaged or incomplete, so it cannot be opened. Take the photo "
                                      "again, or choose another file.")
    TOO_MANY_PIXELS = ("too_many_pixels", "This image is too large to open (more than {max_pixels}). Take the "
                                          "photo again with your camera's normal setting, or choose a smaller image.")
    BLURRED = ("blurred", "This photo looks blurred. Hold your phone steady and take it again.")
    TOO_DARK = ("too_dark", "This photo is too dark. Take it again somewhere brighter, or turn on your "
                            "phone's flash.")
    SIZE_MISMATCH = ("size_mismatch", "The file changed while it was being sent. Choose the file again.")
    POLYGLOT = ("polyglot", "This file is a PDF and another kind of file at the same time, so it cannot be "
                            "accepted. Open it, save or print it as a new PDF, and upload that copy.")
    PDF_ACTIVE = ("pdf_active", "This PDF contains a script, an attached file or a link that starts a program, so "
                                "the clinic cannot accept it. Open it, print it to a new PDF (choose \"Save as PDF\" "
                                "as the printer), and upload that copy.")
    INFECTED = ("infected", "Our virus check found something harmful in this file, so it was not stored. Delete "
                            "it, and ask whoever sent it to you for a new copy.")
    SCAN_UNAVAILABLE = ("scan_unavailable", "We cannot check files for viruses at the moment, so nothing was "
                                            "stored. Try again later.")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]

    @property
    def retake(self) -> bool:
        """The fix is to take the photo again (the page offers the camera first)."""
        return self in (Reason.BLURRED, Reason.TOO_DARK)

    @property
    def http_status(self) -> int:
        if self is Reason.SCAN_UNAVAILABLE:
            return 503  # nothing wrong with the file: the service cannot take it just now
        return 413 if self is Reason.TOO_LARGE else 422


class DocumentRejected(ValueError):
    """The file cannot be accepted; the message tells the person what to do."""

    def __init__(self, reason: Reason | str, *, detail: dict | None = None):
        self.reason = reason if isinstance(reason, Reason) else None
        #: Extra facts for the audit entry (e.g. the virus scanner's finding); never shown to the person.
        self.detail = detail or {}
        self.code = self.reason.code if self.reason else "rejected"
        self.retake = bool(self.reason and self.reason.retake)
        self.http_status = self.reason.http_status if self.reason else 422
        super().__init__(_render(reason))

    @property
    def message(self) -> str:
        return str(self)


def _render(reason: Reason | str) -> str:
    if isinstance(reason, str):
        return reason
    from app.documents import settings

    limits = settings.current()
    return reason.message.format(max_size=limits.max_megabytes, max_pixels=limits.max_megapixels)
