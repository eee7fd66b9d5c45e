"""The fixed forms of the intake. A step's questions come from the questionnaire, so the step form
is read by app/intake/answers.py instead of WTForms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import RadioField, TextAreaField
from wtforms.validators import DataRequired, Length

from app.intake.services import MAX_REASON


class DecisionForm(FlaskForm):
    outcome = RadioField("Your decision", choices=[], validators=[DataRequired("Choose an outcome")])
    reason = TextAreaField("Reason", validators=[
        DataRequired("Give a reason for this decision: it is kept in the record"),
        Length(max=MAX_REASON, message=f"The reason must be {MAX_REASON} characters or fewer")])


class UploadForm(FlaskForm):
    questionnaire = FileField("Questionnaire (FHIR JSON)",
                              validators=[FileRequired("Choose the questionnaire's JSON file")])
    rules = FileField("Eligibility rules (JSON, optional)")
