"""Prescribing: formulary, prescribers, treatment plans, the prescription state machine and signing."""
