"""Exactly one active scheduler: a lease row renewed every tick (as Oban's peers table).

It works the same on PostgreSQL and SQLite. A standby takes over when the lease
runs out (a crashed leader) or at once when the leader releases it on shutdown.
The lease is an efficiency, not the safety net: dispatch itself locks the
categories and claims rows conditionally, so even two active schedulers could
not start one entry twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, update
from sqlalchemy.exc import IntegrityError

from domain.queue.models import LEASES

S = LEASES


class LeaderLease:
    def __init__(
        self,
        engine: Engine,
        holder: str,
        ttl_seconds: float,
        name: str = "scheduler",
    ) -> None:
        self.engine = engine
        self.holder = holder
        self.ttl = timedelta(seconds=ttl_seconds)
        self.name = name
        self.is_leader = False

    def acquire_or_renew(self, now: datetime) -> bool:
        expires = now + self.ttl
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(S)
                .where(S.c.name == self.name, (S.c.holder == self.holder) | (S.c.expires_at < now))
                .values(holder=self.holder, expires_at=expires)
            ).rowcount
        if not taken:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(S).values(name=self.name, holder=self.holder, expires_at=expires)
                    )
                taken = 1
            except IntegrityError:
                taken = 0
        self.is_leader = bool(taken)
        return self.is_leader

    def release(self, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(S)
                .where(S.c.name == self.name, S.c.holder == self.holder)
                .values(expires_at=now - timedelta(seconds=1))
            )
        self.is_leader = False
