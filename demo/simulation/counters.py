"""How the simulator knows a real worker has finished a step's work.

Every process on the step clock counts, in Redis, the Celery tasks it
publishes and the tasks it finishes running; the simulator moves the clock on
only when every task published has finished (including those the tasks
themselves queued). Connected by demo's app config in a process started with
a step clock, and by the simulator itself.
"""

import redis
from celery.signals import before_task_publish, task_postrun

PUBLISHED_KEY = "exchange:sim:published"
FINISHED_KEY = "exchange:sim:finished"

_client: redis.Redis | None = None


def counters_connect(url: str) -> None:
    global _client
    _client = redis.Redis.from_url(url)
    before_task_publish.connect(_published, weak=False)
    task_postrun.connect(_finished, weak=False)


def counters_disconnect() -> None:
    global _client
    before_task_publish.disconnect(_published)
    task_postrun.disconnect(_finished)
    _client = None


def _published(**kwargs) -> None:
    if _client is not None:
        _client.incr(PUBLISHED_KEY)


def _finished(**kwargs) -> None:
    if _client is not None:
        _client.incr(FINISHED_KEY)


def counters_read(client: redis.Redis) -> tuple[int, int]:
    published, finished = client.mget(PUBLISHED_KEY, FINISHED_KEY)
    return int(published or 0), int(finished or 0)


def counters_reset(client: redis.Redis) -> None:
    client.delete(PUBLISHED_KEY, FINISHED_KEY)
