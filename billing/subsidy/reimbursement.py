"""兑付 — reimburse mode, end to end for the buyer.

In a reimburse-mode programme the voucher's share is not deducted: the buyer
pays its invoice in full, and its invoice shows the subsidy pending. Once the
invoice is paid, the buyer presents it (`reimbursement_submit`): one
Reimbursement per programme, naming the amount and the usage records behind
its redemptions (the delivery evidence). Only presented invoices go into the
authority's monthly claim (billing.subsidy.claim_report), which pays the
buyer directly (billing.subsidy.claims).
"""

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Sum
from django.utils.translation import gettext as _

from billing.models import Invoice, Redemption, Reimbursement, SubsidyProgramme
from billing.subsidy.selectors import reimbursement_claimed
from core import clock
from core.errors import ApplicationError, Conflict

LIVE = (Redemption.Status.APPLIED, Redemption.Status.HELD)
REIMBURSE = SubsidyProgramme.SettlementMode.REIMBURSE


@dataclass(frozen=True)
class PendingReimbursement:
    programme: SubsidyProgramme
    amount: int
    usage_records: int
    reimbursement: Reimbursement | None  # None: not presented yet


def invoice_pending_reimbursements(*, invoice: Invoice) -> list[PendingReimbursement]:
    """What reimburse-mode programmes owe the buyer on this invoice, per programme."""
    rows = (
        Redemption.objects.filter(
            invoice_line__invoice=invoice,
            settlement_mode=REIMBURSE,
            beneficiary=invoice.buyer,
            status__in=LIVE,
        )
        .values("programme")
        .annotate(amount=Sum("amount"), records=Count("usage_records", distinct=True))
        .order_by("programme")
    )
    presented = {r.programme_id: r for r in Reimbursement.objects.filter(invoice=invoice)}
    programmes = SubsidyProgramme.objects.in_bulk([row["programme"] for row in rows])
    return [
        PendingReimbursement(
            programme=programmes[row["programme"]],
            amount=row["amount"],
            usage_records=row["records"],
            reimbursement=presented.get(row["programme"]),
        )
        for row in rows
    ]


def reimbursement_submit(*, invoice: Invoice, actor: User | None = None) -> list[Reimbursement]:
    """The buyer presents its paid invoice for 兑付. Presenting twice changes
    nothing; a rejected presentation is presented again."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.status != Invoice.Status.PAID:
            raise ApplicationError(
                _("Pay the invoice first: 兑付 needs the paid invoice."),
                errors={"invoice": [_("The invoice is not paid.")]},
            )
        pending = invoice_pending_reimbursements(invoice=invoice)
        if not pending:
            raise Conflict(_("No reimburse-mode subsidy is pending on this invoice."))
        presented = []
        for row in pending:
            if row.reimbursement is not None and not _presentable(row):
                presented.append(row.reimbursement)
                continue
            reimbursement, _created = Reimbursement.objects.update_or_create(
                invoice=invoice,
                programme=row.programme,
                defaults={
                    "amount": row.amount,
                    "usage_record_count": row.usage_records,
                    "status": Reimbursement.Status.SUBMITTED,
                    "submitted_by": actor,
                    "submitted_at": clock.now(),
                    "rejection_reason": "",
                },
            )
            presented.append(reimbursement)
        return presented


def _presentable(row: PendingReimbursement) -> bool:
    return row.reimbursement is None or row.reimbursement.status == Reimbursement.Status.REJECTED


def reimbursement_reject(
    *, reimbursement: Reimbursement, reason: str, actor: User | None = None
) -> Reimbursement:
    """The authority refuses a presentation (the buyer may present it again).
    Once a live claim lists it, the claim is what the authority rejects."""
    reason = reason.strip()
    if not reason:
        raise ApplicationError(_("Say why."), errors={"reason": [_("A reason is required.")]})
    with transaction.atomic():
        if (
            Reimbursement.objects.filter(pk=reimbursement.pk)
            .filter(reimbursement_claimed())
            .exists()
        ):
            raise Conflict(
                _("The presentation is already in the programme's claim: reject the claim instead.")
            )
        updated = Reimbursement.objects.filter(
            pk=reimbursement.pk, status=Reimbursement.Status.SUBMITTED
        ).update(status=Reimbursement.Status.REJECTED, rejection_reason=reason[:300])
        if updated != 1:
            raise Conflict(_("The presentation was already rejected."))
    reimbursement.refresh_from_db()
    return reimbursement
