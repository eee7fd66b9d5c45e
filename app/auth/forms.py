from __future__ import annotations

import datetime as dt

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, InputRequired, Length, Optional, Regexp


class LoginForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired("Enter your email address"), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password"), Length(max=200)])


class RegisterForm(FlaskForm):
    full_name = StringField("Full name", validators=[DataRequired("Enter your full name"), Length(max=200)])
    email = EmailField("Email address", validators=[
        DataRequired("Enter your email address"),
        Email("Enter an email address in the correct format, like name@example.com"), Length(max=254)])
    # Strings, not IntegerFields: a letter typed by mistake gets our message, not a generic one.
    dob_day = StringField("Day", validators=[InputRequired("Date of birth must include a day"),
                                             Regexp(r"^\s*\d{1,2}\s*$", message="Day must be a number, like 15")])
    dob_month = StringField("Month", validators=[InputRequired("Date of birth must include a month"),
                                                 Regexp(r"^\s*\d{1,2}\s*$", message="Month must be a number, like 3")])
    dob_year = StringField("Year", validators=[InputRequired("Date of birth must include a year"),
                                               Regexp(r"^\s*\d{4}\s*$", message="Year must be 4 digits, like 1980")])
    password = PasswordField("Create a password", validators=[
        DataRequired("Create a password"), Length(10, 200, "Use between 10 and 200 characters")])
    confirm = PasswordField("Confirm your password", validators=[
        DataRequired("Confirm your password"), EqualTo("password", "The passwords do not match")])

    def date_of_birth(self) -> dt.date | None:
        try:
            return dt.date(int(self.dob_year.data), int(self.dob_month.data), int(self.dob_day.data))
        except (TypeError, ValueError):
            return None


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired("Enter the 6-digit code from your authenticator app"),
                                           Length(max=20)])


class RecoveryForm(FlaskForm):
    recovery_code = StringField("Recovery code", validators=[DataRequired("Enter one of your recovery codes"),
                                                             Length(max=20)])


class OptionalCodeForm(FlaskForm):
    code = StringField("Code", validators=[Optional(), Length(max=20)])


class PasswordChangeForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired("Enter your current password"),
                                                            Length(max=200)])
    password = PasswordField("New password", validators=[
        DataRequired("Enter a new password"), Length(10, 200, "Use between 10 and 200 characters")])
    confirm = PasswordField("Confirm your new password", validators=[
        DataRequired("Confirm your new password"), EqualTo("password", "The passwords do not match")])
