"""The baseline: a bare Dramatiq no-op actor on the same Redis, counting in Redis."""

from __future__ import annotations

import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_QUEUE", "bench_bare")
COUNTER = f"{QUEUE}:done"

broker = RedisBroker(url=URL, middleware=[])
dramatiq.set_broker(broker)
_client = redis.Redis.from_url(URL)


@dramatiq.actor(queue_name=QUEUE, actor_name="bare_noop")
def bare_noop(entry_id: int, run_seq: int) -> None:
    _client.incr(COUNTER)
