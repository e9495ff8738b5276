"""The Dramatiq broker: Redis when REDIS_URL is set, else the in-process broker.

Dramatiq's TimeLimit middleware is left out, and its Retries middleware retries
only claims that met a database outage (nothing ran yet): the entry's maximum
attempts, rerun delay and job timeout are the only retry and time rules for the
job itself, so the two never fight.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import uuid4

from dramatiq import Broker, Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis
from dramatiq.middleware import Retries

from runtime.settings import Settings

ACTOR_NAME = "run_entry"


# A claim refused by a database outage is retried from 0.25 s, doubling up to 10 s; after
# this many the dispatch-timeout resend takes over.
CLAIM_RETRIES = 60


def _claim_outage(retries: int, exception: BaseException) -> bool:
    from workers.executor import ClaimUnavailableError

    return isinstance(exception, ClaimUnavailableError) and retries < CLAIM_RETRIES


def claim_retries() -> Retries:
    return Retries(min_backoff=250, max_backoff=10_000, retry_when=_claim_outage)


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


def enqueue_runs(broker: Broker, settings: Settings, runs: Sequence[tuple[int, int]]) -> None:
    """Send one message per run (entry id, run_seq), in order; raises if the broker fails.

    On Redis the whole batch goes in one pipeline (one round trip instead of one per
    message) through the broker's own enqueue script, with the arguments
    `RedisBroker.enqueue` gives it (Dramatiq 2.x, pinned in pyproject).
    """
    messages = [run_message(settings, entry_id, run_seq) for entry_id, run_seq in runs]
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return
    script = broker.scripts["dispatch"]
    unpack = broker._max_unpack_size()  # type: ignore[no-untyped-call]
    pipe = broker.client.pipeline(transaction=False)
    sent = []
    for plain in messages:
        message = plain.copy(options={"redis_message_id": str(uuid4())})
        broker.emit_before("enqueue", message, None)
        args = [
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            broker._should_do_maintenance("enqueue"),
            unpack,
            message.options["redis_message_id"],
            message.encode(),
        ]
        script(keys=[broker.namespace], args=args, client=pipe)
        sent.append(message)
    pipe.execute()
    for message in sent:
        broker.emit_after("enqueue", message, None)
