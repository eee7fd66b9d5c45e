"""The onboarding checklist on the patient's dashboard: one step per domain, one next action.

Each domain answers `checklist_steps(patient) -> list[Step]` in its services; the dashboard puts
them in order and shows the first step that needs the patient as "what to do next".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StepStatus(enum.StrEnum):
    TODO = "Not started"
    IN_PROGRESS = "In progress"
    ACTION = "Action needed"
    WAITING = "Waiting for the clinic"
    DONE = "Completed"
    BLOCKED = "Cannot start yet"
    OPTIONAL = "Optional"

    @property
    def needs_patient(self) -> bool:
        return self in (StepStatus.TODO, StepStatus.IN_PROGRESS, StepStatus.ACTION)

    @property
    def tag(self) -> str:
        """The nhsuk tag colour for this status."""
        return {
            StepStatus.TODO: "blue", StepStatus.IN_PROGRESS: "light-blue", StepStatus.ACTION: "red",
            StepStatus.WAITING: "yellow", StepStatus.DONE: "green", StepStatus.BLOCKED: "grey",
            StepStatus.OPTIONAL: "white",
        }[self]


@dataclass(frozen=True)
class Step:
    #: Stable key, e.g. "intake", "documents:medical_summary", "identity", "consents".
    key: str
    title: str
    status: StepStatus
    #: One plain sentence: what this step is, or what is happening now.
    hint: str = ""
    #: Where the patient does it (None when there is nothing for them to do).
    url: str | None = None
    #: Button text for the next action, e.g. "Continue your health questions".
    action: str | None = None
    #: Position on the checklist (lower first).
    order: int = 100


def next_step(steps: list[Step]) -> Step | None:
    for step in sorted(steps, key=lambda s: s.order):
        if step.status.needs_patient and step.url:
            return step
    return None
