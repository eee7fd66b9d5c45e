"""Messaging's forms. The rules (body length, subject, attachments) live in services.py, which raises
MessagingError with the field at fault; these forms only carry the values (CSRFProtect checks every POST)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectMultipleField, StringField, TextAreaField
from wtforms.widgets import CheckboxInput, ListWidget

#: What a staff reply does to a clinic thread: (status, label).
AFTER_REPLY = (("waiting_on_patient", "Wait for the patient's answer"), ("open", "Keep it open for the clinic"),
               ("closed", "Close the conversation"))


class _Form(FlaskForm):
    class Meta:
        csrf = False  # CSRFProtect checks every POST app-wide (the templates carry the token)


class MultiCheckbox(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class MessageForm(_Form):
    subject = StringField("Subject")
    body = TextAreaField("Your message")
    documents = MultiCheckbox("Attach a document already in the record", coerce=int, choices=[],
                              validate_choice=False)
    #: A staff reply's effect on the thread (one of AFTER_REPLY).
    after = StringField("After sending", default="waiting_on_patient")


class HideForm(_Form):
    reason = StringField("Why hide this message?")


class SavedResponseForm(_Form):
    title = StringField("Title")
    body = TextAreaField("Text")
    active = BooleanField("In use", default=True)
