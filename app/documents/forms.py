from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from app.documents.models import DocumentKind

#: What a patient chooses from when adding a document (ID and selfie have their own page: identity).
PATIENT_KINDS = (DocumentKind.MEDICAL_SUMMARY, DocumentKind.SPECIALIST_LETTER, DocumentKind.PRESCRIPTION_HISTORY,
                 DocumentKind.OTHER)


def kind_choices(kinds=tuple(DocumentKind)) -> list[SelectChoice]:
    return [SelectChoice(kind.value, kind.label) for kind in kinds]


class UploadForm(FlaskForm):
    """The plain form post of one file (the page without JavaScript)."""

    kind = SelectField("What is this document?", choices=kind_choices(PATIENT_KINDS),
                       validators=[DataRequired("Select what kind of document this is")])
    request_id = HiddenField()


class StartUploadForm(FlaskForm):
    """Opening a chunked upload (JSON or form-encoded; the CSRF header is checked app-wide)."""

    class Meta:
        csrf = False

    kind = SelectField(choices=kind_choices(), validators=[DataRequired("Select what kind of document this is")])
    filename = StringField(validators=[DataRequired("The file has no name"), Length(
        max=1000, message="The file's name is too long. Rename the file with a shorter name, then choose it again.")])
    size = IntegerField(validators=[InputRequired("Give the file's size in bytes"), NumberRange(min=0)])
    patient_id = IntegerField(validators=[Optional()])
    request_id = IntegerField(validators=[Optional()])


class RequestDocumentForm(FlaskForm):
    kind = SelectField("Document you need", choices=kind_choices(),
                       validators=[DataRequired("Select the document you need")])
    note = TextAreaField("Note to the patient (optional)",
                         validators=[Optional(), Length(max=500, message="Note must be 500 characters or fewer")])


class ReasonForm(FlaskForm):
    """Hiding a document or cancelling a request: both are kept, with a reason."""

    reason = StringField("Reason", validators=[DataRequired("Enter a reason"),
                                               Length(max=500, message="Reason must be 500 characters or fewer")])
