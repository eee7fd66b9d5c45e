from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from app.consent.services import KINDS


class PublishForm(FlaskForm):
    kind = SelectField("Document", choices=[SelectChoice(k, v) for k, v in KINDS.items() if k != "pharmacy_sharing"],
                       validators=[DataRequired("Choose which document")])
    title = StringField("Title", validators=[DataRequired("Give the document a title"), Length(max=200)])
    body = TextAreaField("Text", validators=[DataRequired("Enter the text patients will read"), Length(max=50_000)])
