"""Admin pieces every app's state history shares (core.models.StatusEvent).

History rows are evidence: the admin shows them and never edits them.
"""

from django.contrib import admin

from core.models import OutboxMessage, ScheduledTaskStatus

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
