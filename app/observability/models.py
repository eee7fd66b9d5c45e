from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db


class WorkerHeartbeat(db.Model):
    """A background worker's sign of life, written every WORKER_HEARTBEAT_SECONDS from its loop.

    `/readyz` wants one newer than READY_WORKER_SECONDS; `/metrics` shows each worker's. A worker
    that stops cleanly removes its row; rows of crashed workers go after a day.
    """

    __tablename__ = "worker_heartbeats"

    #: host:pid, as on the outbox attempts the worker makes.
    name: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(100))
    pid: Mapped[int] = mapped_column()
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
