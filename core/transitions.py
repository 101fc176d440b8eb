"""The one way a status changes: a conditional UPDATE and its event row.

Every state machine of the exchange (orders, leases, offers, invoices,
vouchers, applications, redemptions, claims) moves through `transition`:
the row moves only if it is still in one of the expected statuses (so two
racing requests cannot both move it), and the move appends one row of the
model's history (a `core.models.StatusEvent` subclass with a foreign key to
the model) naming who, from, to and why. The matching engine's bulk writes
are the one exception: they write the same rows in bulk (market/matching/store.py).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.db import models

from core.errors import Conflict
from core.models import StatusEvent

_HISTORIES: dict[type[models.Model], tuple[type[StatusEvent], str]] = {}


def _history_of(model: type[models.Model]) -> tuple[type[StatusEvent], str]:
    """The StatusEvent subclass whose foreign key points at `model`, and that key's name."""
    if model not in _HISTORIES:
        _HISTORIES[model] = _history_find(model)
    return _HISTORIES[model]


def _history_find(model: type[models.Model]) -> tuple[type[StatusEvent], str]:
    pending = list(StatusEvent.__subclasses__())
    while pending:
        candidate = pending.pop()
        pending += candidate.__subclasses__()
        if candidate._meta.abstract:
            continue
        for field in candidate._meta.get_fields():
            if isinstance(field, models.ForeignKey) and field.related_model is model:
                return candidate, field.name
    raise LookupError(f"{model.__name__} has no StatusEvent history")


def transition(
    obj: Any,
    *,
    old: str | Collection[str],
    new: str,
    actor: Any = None,
    reason: str = "",
    **fields: Any,
) -> bool:
    """Move `obj` from `old` (a status or several) to `new`, setting `fields` too.

    Returns False, changing nothing, when the row is no longer in `old`. On
    success the event row is written and `obj` is updated in memory."""
    olds = [old] if isinstance(old, str) else list(old)
    model = type(obj)
    moved = model._default_manager.filter(pk=obj.pk, status__in=olds).update(status=new, **fields)
    if moved != 1:
        return False
    history, key = _history_of(model)
    history._default_manager.create(
        **{key: obj},
        from_status=obj.status if obj.status in olds else olds[0],
        to_status=new,
        actor=actor,
        reason=reason[: StatusEvent._meta.get_field("reason").max_length],
    )
    obj.status = new
    for name, value in fields.items():
        setattr(obj, name, value)
    return True


def transition_or_conflict(
    obj: Any, *, old: str | Collection[str], new: str, **kwargs: Any
) -> None:
    """`transition`, or a Conflict (409) naming the status the object is in now."""
    if not transition(obj, old=old, new=new, **kwargs):
        current = type(obj)._default_manager.get(pk=obj.pk)
        label = type(obj)._meta.verbose_name
        raise Conflict(f"The {label} is {current.get_status_display()}.")


def status_record(obj: Any, *, new: str, actor: Any = None, reason: str = "") -> None:
    """The history row of a status an object was created in (no transition, no `from`)."""
    history, key = _history_of(type(obj))
    history._default_manager.create(
        **{key: obj},
        from_status="",
        to_status=new,
        actor=actor,
        reason=reason[: StatusEvent._meta.get_field("reason").max_length],
    )
