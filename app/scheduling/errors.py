"""Refusals of the scheduling domain; each message is fit to show the person who asked."""

from __future__ import annotations


class SchedulingError(ValueError):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        #: The form field at fault (None: the request as a whole).
        self.field = field
