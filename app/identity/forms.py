from __future__ import annotations

import datetime as dt

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import HiddenField, RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, InputRequired, Length, Optional, Regexp

from app.identity.models import DocumentType
from app.identity.services import REJECTION_REASONS

DOCUMENT_CHOICES = [SelectChoice(t.value, t.label) for t in DocumentType]


class IdentityForm(FlaskForm):
    document_type = RadioField(
        "Which document will you use?", choices=DOCUMENT_CHOICES, validate_choice=False,
        validators=[InputRequired("Choose the document you will use"),
                    AnyOf([t.value for t in DocumentType], message="Choose the document you will use")])
    document_photo = FileField("Photo of your document")
    selfie = FileField("Selfie")
    #: Photos sent ahead by the upload control's script (document ids), when JavaScript runs.
    document_uploaded = HiddenField()
    selfie_uploaded = HiddenField()
    #: Photos accepted on an earlier try of this form: the patient does not take them again.
    document_upload = HiddenField()
    selfie_upload = HiddenField()
    expiry_day = StringField("Day", validators=[InputRequired("The expiry date must include a day"),
                                                Regexp(r"^\s*\d{1,2}\s*$", message="Day must be a number, like 15")])
    expiry_month = StringField("Month", validators=[
        InputRequired("The expiry date must include a month"),
        Regexp(r"^\s*\d{1,2}\s*$", message="Month must be a number, like 3")])
    expiry_year = StringField("Year", validators=[InputRequired("The expiry date must include a year"),
                                                  Regexp(r"^\s*\d{4}\s*$", message="Year must be 4 digits, like 2031")])
    mrz = TextAreaField("The 2 lines at the bottom of your passport photo page (optional)",
                        validators=[Optional(), Length(max=200, message="Enter only the 2 lines, 44 characters each")])

    def expiry(self) -> dt.date | None:
        try:
            return dt.date(int(self.expiry_year.data), int(self.expiry_month.data), int(self.expiry_day.data))
        except (TypeError, ValueError):
            return None


class ReviewForm(FlaskForm):
    decision = RadioField("Your decision", choices=[SelectChoice("approve", "Approve: this is the patient"),
                                                    SelectChoice("reject", "Reject: ask the patient to try again")],
                          validate_choice=False,
                          validators=[InputRequired("Choose approve or reject"),
                                      AnyOf(["approve", "reject"], message="Choose approve or reject")])
    reason = RadioField("Reason the patient will see",
                        choices=[SelectChoice(k, r.label) for k, r in REJECTION_REASONS.items()],
                        validate_choice=False, validators=[Optional()])
    note = TextAreaField("Note for the patient", validators=[Optional(), Length(max=400)])

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        if self.decision.data == "reject":
            if self.reason.data not in REJECTION_REASONS:
                self.reason.errors = [*self.reason.errors, "Choose the reason the patient will see"]
                valid = False
            elif self.reason.data == "other" and not (self.note.data or "").strip():
                self.note.errors = [*self.note.errors, "Write the reason the patient will see"]
                valid = False
        return valid
