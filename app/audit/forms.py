from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, SelectField, StringField
from wtforms.validators import Length, NumberRange, Optional


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search form: it changes nothing

    person = StringField("Person (email)", validators=[Optional(), Length(max=254)])
    patient = IntegerField("Patient number", validators=[Optional(), NumberRange(1, 2**31)])
    action = SelectField("Action", choices=[], validators=[Optional()])
    date_from = DateField("From", validators=[Optional()])
    date_to = DateField("To", validators=[Optional()])
    before = IntegerField(validators=[Optional(), NumberRange(1)])
