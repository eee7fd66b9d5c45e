"""Forms of the availability pages. Times and dates are strings parsed here, so a typing slip gets our
message rather than a generic one (the inputs are type=time and type=date in the browser)."""

from __future__ import annotations

import datetime as dt

from flask_wtf import FlaskForm
from wtforms import RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, Regexp, ValidationError

from app.scheduling.availability import WEEKDAYS

TIME = r"^\s*([01]?\d|2[0-3]):[0-5]\d\s*$"


def parse_time(value: str | None) -> dt.time | None:
    try:
        return dt.datetime.strptime((value or "").strip(), "%H:%M").time()
    except ValueError:
        return None


def parse_date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat((value or "").strip())
    except ValueError:
        return None


def _is_date(form, field) -> None:
    if field.data and parse_date(field.data) is None:
        raise ValidationError(f"{field.label.text} must be a real date, like 2026-12-01")


def _minutes(form, field) -> None:
    if field.data and not field.data.strip().isdigit():
        raise ValidationError("Slot length must be a number of minutes, like 30")


class PatternForm(FlaskForm):
    weekday = SelectField("Day", choices=[SelectChoice(str(i), name) for i, name in enumerate(WEEKDAYS)],
                          validators=[InputRequired("Choose a day of the week")])
    start_time = StringField("Start time", validators=[
        DataRequired("Enter a start time, like 09:00"), Regexp(TIME, message="Start time must be like 09:00")])
    end_time = StringField("End time", validators=[
        DataRequired("Enter an end time, like 13:00"), Regexp(TIME, message="End time must be like 13:00")])
    consultation_type = SelectField("Consultation type", validators=[InputRequired("Choose a consultation type")])
    slot_minutes = StringField("Slot length (minutes)", validators=[
        DataRequired("Enter the slot length in minutes, like 30"), Length(max=3), _minutes])
    valid_from = StringField("First day", validators=[DataRequired("Enter the first day"), _is_date])
    valid_to = StringField("Last day (optional)", validators=[Optional(), _is_date])


class ExceptionForm(FlaskForm):
    kind = RadioField("What is it?", choices=[SelectChoice("leave", "Leave (no appointments)"),
                                              SelectChoice("extra", "Extra session (more appointments)")],
                      validators=[InputRequired("Choose leave or an extra session")])
    start_date = StringField("From", validators=[DataRequired("Enter the first day"), _is_date])
    start_time = StringField("Start time (optional for leave)", validators=[
        Optional(), Regexp(TIME, message="Start time must be like 09:00")])
    end_date = StringField("To (optional: the same day)", validators=[Optional(), _is_date])
    end_time = StringField("End time (optional for leave)", validators=[
        Optional(), Regexp(TIME, message="End time must be like 17:00")])
    consultation_type = SelectField("Consultation type (extra sessions)", validators=[Optional()])
    slot_minutes = StringField("Slot length in minutes (extra sessions)", validators=[
        Optional(), Length(max=3), _minutes])
    note = StringField("Note for staff (optional)", validators=[Optional(), Length(max=200)])
