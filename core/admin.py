"""Admin pieces every app's state history shares (core.models.StatusEvent).

History rows are evidence: the admin shows them and never edits them.
"""

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.utils import dateformat, timezone

from core.models import OutboxMessage, ScheduledTaskStatus

TO_THE_SECOND = "Y-m-d H:i:s"


def shown_to_the_second(model: Any, *names: str) -> list[Callable]:
    """Admin columns showing `model`'s datetimes to the second, read-only.

    Times that allocate or bill (a lease's window, an order's deadline, an
    invoice's period) are never form fields in the admin: a widget that shows
    them to the minute would move them by the truncated seconds when the form
    is saved unchanged. Their changes go through services that record an event.
    """
    columns = []
    for name in names:

        def column(obj: Any, name: str = name) -> str:
            value = getattr(obj, name)
            if value is None:
                return "—"
            return dateformat.format(timezone.localtime(value), TO_THE_SECOND)

        column.__name__ = f"{name}_to_the_second"
        column.short_description = model._meta.get_field(name).verbose_name  # type: ignore[attr-defined]
        column.admin_order_field = name  # type: ignore[attr-defined]
        columns.append(column)
    return columns


class ViewOnlyAdmin(admin.ModelAdmin):
    """Rows a service owns: the admin shows them and never adds, edits or deletes."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


STATUS_EVENT_COLUMNS = ["from_status", "to_status", "actor", "reason", "at"]


def _subject(model) -> str:
    """The foreign key naming what changed (order, lease, invoice, ...)."""
    return next(f.name for f in model._meta.fields if f.is_relation and f.name != "actor")


class StatusEventInline(admin.TabularInline):
    extra = 0
    can_delete = False
    readonly_fields = STATUS_EVENT_COLUMNS
    fields = STATUS_EVENT_COLUMNS

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class StatusEventAdmin(admin.ModelAdmin):
    list_filter = ["to_status"]

    def get_list_display(self, request):
        return [_subject(self.model), *STATUS_EVENT_COLUMNS]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """The outbox is the evidence of work owed: shown, never edited (the relay
    republishes a waiting row by itself)."""

    list_display = [
        "pk",
        "task_name",
        "key",
        "created_at",
        "attempts",
        "completed_at",
        "last_error",
    ]
    list_filter = [("completed_at", admin.EmptyFieldListFilter), "task_name"]
    search_fields = ["key", "task_name"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ScheduledTaskStatus)
class ScheduledTaskStatusAdmin(admin.ModelAdmin):
    """Written by the Celery signals only: shown, never edited."""

    list_display = ["name", "last_success_at", "last_failure_at", "failures_in_a_row"]
    readonly_fields = ["name", "last_success_at", "last_failure_at", "last_error"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
