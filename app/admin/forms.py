from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, Optional

from app.auth.models import STAFF_ROLES

STAFF_CHOICES = [SelectChoice(r.value, r.label) for r in sorted(STAFF_ROLES, key=lambda r: r.value)]


class StaffUserForm(FlaskForm):
    full_name = StringField("Full name", validators=[DataRequired("Enter the person's full name"), Length(max=200)])
    email = EmailField("Email address", validators=[DataRequired("Enter an email address"),
                                                    Email("Enter an email address in the correct format"),
                                                    Length(max=254)])
    role = SelectField("Role", choices=STAFF_CHOICES, validators=[DataRequired("Choose a role")])
    pharmacy_id = SelectField("Pharmacy (pharmacists only)", coerce=int, choices=[])
    password = PasswordField("Temporary password", validators=[
        DataRequired("Enter a temporary password"), Length(10, 200, "Use between 10 and 200 characters")])


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=STAFF_CHOICES, validators=[DataRequired("Choose a role")])
    pharmacy_id = SelectField("Pharmacy (pharmacists only)", coerce=int, choices=[])
    save_role = SubmitField("Save role")


class ActiveForm(FlaskForm):
    toggle = SubmitField("Change")


class ResetRequestForm(FlaskForm):
    reason = TextAreaField("Why does their second factor need resetting?", validators=[
        DataRequired("Say why the second factor needs resetting, and how you checked who asked"),
        Length(max=500, message="Keep the reason to 500 characters or fewer")])


class ResetDecisionForm(FlaskForm):
    note = TextAreaField("Note (needed if you decline)", validators=[
        Optional(), Length(max=500, message="Keep the note to 500 characters or fewer")])
    approve = SubmitField("Approve and reset")
    decline = SubmitField("Decline")
