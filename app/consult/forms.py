"""Forms of the consultation: the note (autosave, sign, amend) and a guest's invitation.

Every form is posted by htmx with the CSRF token in its header (base.html), so the token is not a field
here; Flask-WTF's CSRFProtect checks it for every POST.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length

from app.consult.services import GUEST_ROLES, NOTE_MAX, REASON_MAX


class _Form(FlaskForm):
    class Meta:
        csrf = False  # CSRFProtect checks the header of every POST already


class NoteForm(_Form):
    text = TextAreaField("Consultation note", validators=[InputRequired(), Length(max=NOTE_MAX)])


class AmendForm(_Form):
    text = TextAreaField("Amended note", validators=[DataRequired("An amended note cannot be empty."),
                                                     Length(max=NOTE_MAX)])
    reason = StringField("Reason for the amendment",
                         validators=[DataRequired("Say why you are amending the signed note."),
                                     Length(max=REASON_MAX)])
    based_on = HiddenField()


class GuestForm(_Form):
    name = StringField("Guest's name", validators=[DataRequired("Enter the guest's name."), Length(max=100)])
    role = RadioField("They are", choices=[SelectChoice(key, label) for key, label in GUEST_ROLES.items()],
                      validators=[DataRequired("Choose interpreter or carer.")])
