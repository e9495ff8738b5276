"""Wires a broker, the run actor and the executor together for one process."""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq
from dramatiq import Actor, Broker
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import jobs.builtin
import jobs.email_logging.job
import jobs.mail.job
import jobs.sales.job  # noqa: F401  (each module registers its jobs)
from domain.db import make_engine, make_session_factory
from jobs.notifications import webhooks
from jobs.notifications.send import Notifier
from jobs.registry import JobRegistry, registry
from runtime.settings import Settings
from workers.broker import ACTOR_NAME, build_broker, claim_retries, ensure_queue
from workers.executor import RunExecutor
from workers.middleware import LeaseMiddleware


@dataclass
class WorkerApp:
    settings: Settings
    broker: Broker
    engine: Engine
    session_factory: sessionmaker[Session]
    executor: RunExecutor
    actor: Actor[[int, int], None]


def create_app(
    settings: Settings,
    *,
    broker: Broker | None = None,
    engine: Engine | None = None,
    jobs: JobRegistry = registry,
) -> WorkerApp:
    broker = broker or build_broker(settings)
    engine = engine or make_engine(settings.database_url)
    session_factory = make_session_factory(engine)
    notifier = Notifier(session_factory, broker.enqueue, settings)
    executor = RunExecutor(
        engine, session_factory, jobs, settings, settings.shutdown_grace_seconds, notifier
    )
    broker.add_middleware(LeaseMiddleware(executor))
    broker.add_middleware(claim_retries())

    def run_entry(entry_id: int, run_seq: int) -> None:
        executor.execute(entry_id, run_seq)

    actor: Actor[[int, int], None] = dramatiq.actor(
        actor_name=ACTOR_NAME, broker=broker, queue_name=settings.queue_name
    )(run_entry)

    def deliver_webhook(url: str, msg_id: str, body: str, attempt: int) -> None:
        webhooks.deliver(settings, broker.enqueue, url, msg_id, body, attempt)

    dramatiq.actor(actor_name=webhooks.ACTOR_NAME, broker=broker, queue_name=settings.queue_name)(
        deliver_webhook
    )
    ensure_queue(broker, settings)
    return WorkerApp(settings, broker, engine, session_factory, executor, actor)
