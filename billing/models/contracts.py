from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from market.models import Order


class FrameworkAgreement(models.Model):
    """A signed framework agreement between a buyer and a provider that
    covers several orders: for subsidy rules it is one contract, with its own
    term. An order outside any agreement is a contract of its own, its term
    running from its first lease's start to its last lease's end
    (billing.subsidy.rules.line_contract)."""

    buyer = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    provider = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reference = models.CharField(_("contract number"), max_length=100)
    signed_at = models.DateTimeField()
    term_start = models.DateTimeField()
    term_end = models.DateTimeField()
    orders = models.ManyToManyField(Order, related_name="framework_agreements", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-signed_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(term_end__gt=models.F("term_start")), name="framework_term_ordered"
            ),
        ]

    def __str__(self) -> str:
        return self.reference
