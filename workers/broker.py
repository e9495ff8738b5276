"""The Dramatiq broker: Redis when REDIS_URL is set, else the in-process broker.

Dramatiq's own Retries and TimeLimit middleware are left out on purpose: the
entry's maximum attempts, rerun delay and job timeout are the only retry and
time rules, so the two never fight.
"""

from __future__ import annotations

from dramatiq import Broker, Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from runtime.settings import Settings

ACTOR_NAME = "run_entry"


def build_broker(settings: Settings) -> Broker:
    if settings.redis_url:
        return RedisBroker(url=settings.redis_url, middleware=[])  # type: ignore[no-untyped-call]
    return StubBroker(middleware=[])


def run_message(settings: Settings, entry_id: int, run_seq: int) -> Message[None]:
    """The message that asks a worker to start run `run_seq` of entry `entry_id`."""
    return Message(
        queue_name=settings.queue_name,
        actor_name=ACTOR_NAME,
        args=(entry_id, run_seq),
        kwargs={},
        options={},
    )


def ensure_queue(broker: Broker, settings: Settings) -> None:
    broker.declare_queue(settings.queue_name)
