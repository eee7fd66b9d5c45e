"""The schema of every message a client may send, checked before anything acts on it.

Anything that does not match (wrong type, unknown field, too long) is refused with a `problem`
event naming the event; nothing is relayed, nothing raises out of a handler.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["Auth", "Candidate", "Description", "EchoOffer", "Empty", "MediaState", "Ping", "Signal",
           "ValidationError"]

#: A Socket.IO sid (20 url-safe characters today; a little room for other engines).
Sid = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
#: An SDP body: a few kB with every codec and candidate; 64 kB is the transport's own limit.
Sdp = Annotated[str, Field(min_length=1, max_length=60_000)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Auth(Message):
    """The `auth` of a connect: the join token and the appointment the client means to join."""

    token: Annotated[str, Field(min_length=1, max_length=1000)]
    appointment: Annotated[int, Field(ge=1)] | None = None


class Description(Message):
    type: Literal["offer", "answer", "rollback"]
    sdp: Annotated[str, Field(max_length=60_000)] = ""


class Candidate(Message):
    candidate: Annotated[str, Field(max_length=1000)]
    sdpMid: Annotated[str, Field(max_length=64)] | None = None  # the WebRTC field names
    sdpMLineIndex: Annotated[int, Field(ge=0, le=64)] | None = None
    usernameFragment: Annotated[str, Field(max_length=256)] | None = None


class Signal(Message):
    """An offer, answer or ICE candidate for one other peer of the call."""

    to: Sid
    description: Description | None = None
    candidate: Candidate | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> Signal:
        if (self.description is None) == (self.candidate is None):
            raise ValueError("a signal carries either a description or a candidate")
        return self


class MediaState(Message):
    """What a peer is sending, so the other side can say "camera off" rather than show a black frame."""

    muted: bool
    camera: bool
    sharing: bool


class Ping(Message):
    t: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Empty(Message):
    pass


class EchoOffer(Message):
    """An offer for the server's own aiortc peer, so its SDP is checked a little further than the relay's."""

    type: Literal["offer"]
    sdp: Sdp

    @model_validator(mode="after")
    def _looks_like_sdp(self) -> EchoOffer:
        if not self.sdp.startswith("v=0") or "\nm=" not in self.sdp:
            raise ValueError("not a session description with media")
        return self
