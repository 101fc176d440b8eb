"""Reads cached until what they read changes: a named generation counter in
the Django cache (Redis in production, shared by every web process).

A writer calls `generation_bump(name)` in its transaction; the counter moves
on then and again after commit, so every value cached under the old generation is never
read again (Redis evicts it with its timeout). `cached(name, key, compute)`
answers from the current generation or computes and stores. The timeout
bounds how stale a value can be should a writer forget to bump. An
unreachable cache computes every read afresh (and says so in the log): slower,
never wrong, and never a 500.
"""

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import transaction
from redis.exceptions import RedisError

T = TypeVar("T")

logger = logging.getLogger(__name__)


def _key(name: str) -> str:
    return f"generation:{name}"


def generation(name: str) -> int:
    value = cache.get(_key(name))
    if value is None:
        # Never an earlier generation's number again after an eviction: start at the clock.
        value = time.time_ns()
        cache.add(_key(name), value, timeout=None)
        value = cache.get(_key(name), value)
    return int(value)


def _bump(name: str) -> None:
    try:
        cache.incr(_key(name))
    except ValueError:
        cache.set(_key(name), time.time_ns(), timeout=None)


def generation_bump(name: str) -> None:
    """What `name` caches changes with the current transaction: move its
    generation on now (this transaction's own later reads) and again after
    commit (a value another process computed meanwhile, from the rows before
    the commit, is never read after it)."""
    _bump(name)
    transaction.on_commit(lambda: _bump(name))


def cached(name: str, key: str, compute: Callable[[], T], *, timeout: int = 300) -> T:
    try:
        full = f"{name}:{generation(name)}:{key}"
        value = cache.get(full)
    except (RedisError, OSError):
        logger.warning("cache unavailable; %s read uncached", name, exc_info=True)
        return compute()
    if value is None:
        value = compute()
        try:
            cache.set(full, value, timeout=timeout)
        except (RedisError, OSError):
            logger.warning("cache unavailable; %s not stored", name, exc_info=True)
    return value


# (name, key) -> (generation, value): `cached_in_process` values of this process.
_process_values: dict[tuple[str, str], tuple[int, Any]] = {}


def cached_in_process(name: str, key: str, compute: Callable[[], T], *, timeout: int = 300) -> T:
    """`cached`, with the value also kept in this process for as long as its
    generation stands: a read costs one cache round trip (the generation), no
    fetch and no unpickling. For small values that callers only read."""
    try:
        current = generation(name)
    except (RedisError, OSError):
        logger.warning("cache unavailable; %s read uncached", name, exc_info=True)
        return compute()
    kept = _process_values.get((name, key))
    if kept is not None and kept[0] == current:
        return kept[1]
    value = cached(name, key, compute, timeout=timeout)
    # labelled with the generation read first: should it have moved on meanwhile,
    # the next read misses and fetches again
    _process_values[(name, key)] = (current, value)
    return value
