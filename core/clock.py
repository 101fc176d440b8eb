"""The exchange's clock.

Every "now" in the domain comes from :func:`now`, never from ``timezone.now()``
scattered through the code, so that a simulation can run a market day in
minutes and tests can move time without patching each module. The real
source is Django's aware UTC time; :func:`use` swaps in another source (a
simulated clock) for the duration of a ``with`` block.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.utils import timezone

Source = Callable[[], dt.datetime]


def _real() -> dt.datetime:
    return timezone.now()


_source: Source = _real


def now() -> dt.datetime:
    """The current instant, aware, in UTC, from the clock in use."""
    return _source()


@contextmanager
def use(source: Source) -> Iterator[None]:
    """Run the block on another clock (e.g. a simulated one)."""
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous
