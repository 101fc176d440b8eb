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
