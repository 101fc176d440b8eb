from django.conf import settings
from django.db import models


class StatusEvent(models.Model):
    """One change of an object's status: who, when, from → to, and why.

    Every state machine of the exchange (orders, leases, offers, invoices,
    vouchers, applications, redemptions) appends one of these per transition;
    a concrete subclass adds the foreign key to its object.
    """

    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=300, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"


class ScheduledTaskStatus(models.Model):
    """How a scheduled task (an entry of settings.CELERY_BEAT_SCHEDULE) last
    ended: its last success, its last failure and that failure's error.
    Written by Celery's task signals (core/scheduled_tasks.py), read by the
    operator overview. It is failing while its last failure is newer than its
    last success."""

    name = models.CharField(max_length=200, unique=True)  # the Celery task name
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    failures_in_a_row = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "scheduled task statuses"

    def __str__(self) -> str:
        return self.name

    @property
    def failing(self) -> bool:
        if self.last_failure_at is None:
            return False
        return self.last_success_at is None or self.last_failure_at > self.last_success_at


class OutboxMessage(models.Model):
    """A Celery task written in the same transaction as the change that needs
    it (core/outbox.py). Published after commit; `completed_at` is set when a
    worker has run the task to the end, so a message a lost broker dropped is
    published again by the relay. At most one row per `key` waits at a time.
    """

    task_name = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    key = models.CharField(max_length=200)
    task_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The relay publishes a waiting row once this has passed (again after each publish).
    available_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    completed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"],
                condition=models.Q(completed_at__isnull=True),
                name="outbox_one_waiting_per_key",
            )
        ]
        indexes = [
            models.Index(
                fields=["available_at"],
                condition=models.Q(completed_at__isnull=True),
                name="outbox_waiting_due",
            )
        ]

    def __str__(self) -> str:
        return f"{self.task_name}{self.args} [{self.key}]"
