"""Periodic jobs across several background workers: a singleton job runs on one worker at a time (PostgreSQL's
advisory locks; SQLite runs one worker), the lock outlives the job's own commits and is let go at the end, and a
job that shares out its own work runs on every worker."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from app import worker
from app.extensions import db


def _held_elsewhere(app, name: str) -> bool:
    """Whether another connection (another worker) finds the lock taken, asked from a thread of its own."""
    answer: list[bool] = []

    def ask() -> None:
        with app.app_context(), worker.singleton(name) as ours:
            answer.append(not ours)

    thread = threading.Thread(target=ask)
    thread.start()
    thread.join(timeout=30)
    assert answer, "the other worker did not answer"
    return answer[0]


def test_a_singleton_lock_is_held_for_the_whole_job_and_let_go_after(app, ctx):
    postgres = db.engine.dialect.name == "postgresql"
    with worker.singleton("pharmacy.digest") as ours:
        assert ours
        db.session.execute(sa.text("SELECT 1"))
        db.session.commit()  # the job's own transactions end; the lock stays
        assert _held_elsewhere(app, "pharmacy.digest") is postgres
        assert not _held_elsewhere(app, "scheduling.reminders")
    assert not _held_elsewhere(app, "pharmacy.digest")


def test_a_failing_job_lets_the_lock_go(app, ctx):
    with pytest.raises(RuntimeError), worker.singleton("outcomes.schedule"):
        raise RuntimeError("the job failed")
    assert not _held_elsewhere(app, "outcomes.schedule")


def test_the_worker_skips_a_singleton_job_another_worker_is_running_but_not_a_shared_one(app, ctx):
    ran: list[str] = []
    worker.periodic("test.singleton", 60)(lambda: ran.append("singleton"))
    worker.periodic("test.shared", 60, singleton=False)(lambda: ran.append("shared"))
    try:
        jobs = {name: job for name, _every, job in worker._jobs}
        with worker.singleton("test.singleton"):  # another worker is in the middle of it
            def other_worker() -> None:
                with app.app_context():
                    worker._run_job("test.singleton", jobs["test.singleton"])
                    worker._run_job("test.shared", jobs["test.shared"])

            thread = threading.Thread(target=other_worker)
            thread.start()
            thread.join(timeout=30)
            assert not thread.is_alive()
        skipped = db.engine.dialect.name == "postgresql"
        assert ran == (["shared"] if skipped else ["singleton", "shared"])
        worker._run_job("test.singleton", jobs["test.singleton"])  # free again
        assert ran[-1] == "singleton"
    finally:
        worker._jobs[:] = [job for job in worker._jobs if not job[0].startswith("test.")]
        worker._shared.discard("test.shared")


def test_lock_keys_are_stable_and_distinct():
    assert worker.lock_key("pharmacy.digest") == worker.lock_key("pharmacy.digest")
    assert worker.lock_key("pharmacy.digest") != worker.lock_key("scheduling.reminders")
    assert -(2 ** 63) <= worker.lock_key("pharmacy.digest") < 2 ** 63


def test_the_imports_share_out_their_work_and_the_once_a_period_jobs_are_singletons():
    import app.notifications.services
    import app.outcomes.services
    import app.pharmacy.pipeline
    import app.prescribing.services
    import app.scheduling.services  # noqa: F401  (these register the jobs)

    once = {"pharmacy.digest", "notifications.dead_letters", "outcomes.schedule", "scheduling.reminders",
            "prescribing.expire"}
    assert once <= {name for name, _every, _job in worker._jobs}
    assert "outcomes.imports" in worker._shared and not once & worker._shared
