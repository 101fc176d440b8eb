"""Claims the authority pays: submit → approve → paid (or rejected).

A claim is built from the month's applied redemptions (billing.subsidy.claim_report, the
same rows the claim report lists) and records what the authority owes:

- deduct mode: the voucher share was deducted from invoices (or, on a
  supply-side programme, paid to the provider by the platform), so the
  authority reimburses the *platform*: `deduct_amount`;
- reimburse mode: the buyer paid in full; the authority pays the
  *beneficiary* directly after review: `reimburse_amount`.

Every redemption debited the programme's spent account (SUBSIDY_RECEIVABLE
`programme:N` of the authority: what the authority owes for subsidy paid
out) and credited, in deduct mode, the platform's settlement clearing (which
invoice issue had debited: it nets to zero), in reimburse mode the
beneficiary's SUBSIDY_PAYABLE `programme:N`. `claim_mark_paid` closes both.
"""

import datetime as dt
from collections import defaultdict

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from accounts.models import Organisation
from billing.ledger import Leg, account_get, transaction_post
from billing.models import (
    LedgerAccount,
    Redemption,
    SubsidyClaim,
    SubsidyProgramme,
)
from billing.subsidy.accounts import programme_accounts
from billing.subsidy.claim_report import claim_redemptions
from billing.subsidy.selectors import CLAIM_PAID_KIND
from billing.trail import claim_seal
from core import clock
from core.errors import ApplicationError, Conflict
from core.transitions import status_record, transition_or_conflict

CS = SubsidyClaim.Status
P = LedgerAccount.Purpose
REIMBURSE = SubsidyProgramme.SettlementMode.REIMBURSE
ONE_PER_MONTH = "A claim for this programme and month already exists."


def claim_submit(
    *,
    programme: SubsidyProgramme,
    year: int,
    month: int,
    actor: User | None = None,
) -> SubsidyClaim:
    """Freeze the month's applied redemptions into a claim (one live claim
    per programme and month; a rejected month may be claimed again)."""
    if not 1 <= month <= 12:
        raise ApplicationError("The claim is not valid.", errors={"month": ["No such month."]})
    with transaction.atomic():
        programme = SubsidyProgramme.objects.select_for_update().get(pk=programme.pk)
        live = SubsidyClaim.objects.filter(programme=programme, year=year, month=month).exclude(
            status=CS.REJECTED
        )
        if live.exists():
            raise ApplicationError("The claim is not valid.", errors={"month": [ONE_PER_MONTH]})
        redemptions = list(claim_redemptions(programme=programme, year=year, month=month))
        if not redemptions:
            raise ApplicationError(
                "The claim is not valid.", errors={"month": ["Nothing was paid in this month."]}
            )
        per_beneficiary: dict[tuple, dict] = {}
        amounts: defaultdict[str, int] = defaultdict(int)
        for redemption in redemptions:
            key = (redemption.beneficiary_id, redemption.settlement_mode)
            row = per_beneficiary.setdefault(
                key,
                {
                    "beneficiary_id": redemption.beneficiary_id,
                    "beneficiary": redemption.beneficiary.legal_name,
                    "mode": redemption.settlement_mode,
                    "amount": 0,
                    "redemptions": [],
                },
            )
            row["amount"] += redemption.amount
            row["redemptions"].append(redemption.pk)
            amounts[redemption.settlement_mode] += redemption.amount
        try:
            with transaction.atomic():
                claim = SubsidyClaim.objects.create(
                    programme=programme,
                    year=year,
                    month=month,
                    currency=programme.currency,
                    deduct_amount=amounts[SubsidyProgramme.SettlementMode.DEDUCT],
                    reimburse_amount=amounts[REIMBURSE],
                    breakdown=sorted(
                        per_beneficiary.values(), key=lambda r: (r["mode"], r["beneficiary"])
                    ),
                    submitted_by=actor,
                )
        except IntegrityError as exc:  # a concurrent submit won
            raise ApplicationError(
                "The claim is not valid.", errors={"month": [ONE_PER_MONTH]}
            ) from exc
        claim.redemptions.set(redemptions)
        status_record(claim, new=CS.SUBMITTED, actor=actor)
        # the claim carries the signed tree head it was computed under (billing.trail)
        claim_seal(claim=claim)
    return claim


def _changed_since_submit(claim: SubsidyClaim) -> list[int]:
    return sorted(
        claim.redemptions.exclude(status=Redemption.Status.APPLIED).values_list("pk", flat=True)
    )


def _refuse_if_changed(claim: SubsidyClaim) -> None:
    changed = _changed_since_submit(claim)
    if changed:
        raise Conflict(
            "Redemptions were held or clawed back since the claim was submitted: "
            f"{', '.join(map(str, changed))}. Reject the claim and submit the month again.",
            errors={"redemptions": [f"changed: {changed}"]},
        )


def claim_approve(*, claim: SubsidyClaim, actor: User | None = None) -> SubsidyClaim:
    with transaction.atomic():
        claim = SubsidyClaim.objects.select_for_update().get(pk=claim.pk)
        _refuse_if_changed(claim)
        transition_or_conflict(
            claim,
            old=CS.SUBMITTED,
            new=CS.APPROVED,
            actor=actor,
            decided_by=actor,
            decided_at=clock.now(),
        )
    claim.refresh_from_db()
    return claim


def claim_reject(*, claim: SubsidyClaim, reason: str, actor: User | None = None) -> SubsidyClaim:
    if not reason.strip():
        raise ApplicationError("Say why.", errors={"reason": ["A reason is required."]})
    with transaction.atomic():
        claim = SubsidyClaim.objects.select_for_update().get(pk=claim.pk)
        transition_or_conflict(
            claim,
            old=(CS.SUBMITTED, CS.APPROVED),
            new=CS.REJECTED,
            actor=actor,
            reason=reason,
            decided_by=actor,
            decided_at=clock.now(),
            rejection_reason=reason[:300],
        )
    claim.refresh_from_db()
    return claim


def claim_payment_legs(claim: SubsidyClaim) -> list[Leg]:
    """The entries of the authority's payment (debit positive).

    - deduct part: Dr platform BANK / Cr the programme's spent account
      (SUBSIDY_RECEIVABLE `programme:N`): the cash the platform fronted
      (deducted from invoices, or paid to providers) comes in and the
      authority no longer owes it. The platform's settlement clearing is
      not touched: invoice issue and the redemptions already netted it.
    - reimburse part: per beneficiary, Dr SUBSIDY_PAYABLE `programme:N` /
      Cr the spent account. The authority paid the beneficiary itself, so
      no platform cash moves: the platform's record that it owes the buyer
      the subsidy and its record that the authority owes the subsidy are
      discharged together. (Routing it through BANK — authority → platform
      → buyer — would net to the same balances with a BANK in-and-out.)

    After payment the month's redemptions leave SUBSIDY_RECEIVABLE
    `programme:N`, the clearing account and each SUBSIDY_PAYABLE at zero.
    """
    programme = claim.programme
    currency = claim.currency
    spent = programme_accounts(programme=programme).spent
    legs = []
    if claim.deduct_amount:
        legs.append(Leg(account_get(purpose=P.BANK, currency=currency), claim.deduct_amount))
    for row in claim.breakdown:
        if row["mode"] == REIMBURSE and row["amount"]:
            payable = account_get(
                purpose=P.SUBSIDY_PAYABLE,
                organisation=Organisation(pk=row["beneficiary_id"]),
                reference=programme.reference,
                currency=currency,
            )
            legs.append(Leg(payable, row["amount"]))
    legs.append(Leg(spent, -claim.total_amount))
    return legs


def claim_mark_paid(
    *,
    claim: SubsidyClaim,
    paid_at: dt.datetime,
    reference: str,
    actor: User | None = None,
) -> SubsidyClaim:
    """Record that the authority paid an approved claim: one balanced ledger
    transaction (business key `claim:<pk>:paid`, see `claim_payment_legs`).
    Marking a paid claim paid again changes and posts nothing."""
    if not reference.strip():
        raise ApplicationError(
            "The payment is not valid.", errors={"reference": ["Give the payment reference."]}
        )
    with transaction.atomic():
        claim = (
            SubsidyClaim.objects.select_for_update().select_related("programme").get(pk=claim.pk)
        )
        if claim.status == CS.PAID:
            return claim
        if claim.status != CS.APPROVED:
            raise Conflict(f"The claim is {claim.get_status_display()}: approve it first.")
        _refuse_if_changed(claim)
        ledger_txn, _created = transaction_post(
            business_key=f"claim:{claim.pk}:paid",
            kind=CLAIM_PAID_KIND,
            legs=claim_payment_legs(claim),
            memo=f"Authority paid claim {claim.pk} ({claim.year}-{claim.month:02d}, "
            f"programme {claim.programme_id}), reference {reference[:100]}",
        )
        transition_or_conflict(
            claim,
            old=CS.APPROVED,
            new=CS.PAID,
            actor=actor,
            reason=reference[:300],
            paid_at=paid_at,
            payment_reference=reference[:100],
            paid_by=actor,
            ledger_transaction=ledger_txn,
        )
    claim.refresh_from_db()
    return claim


def claims_by_month(*, programme: SubsidyProgramme, months: list[tuple[int, int]]) -> list[tuple]:
    """(year, month, latest claim or None) for the programme page, newest first."""
    latest: dict[tuple, SubsidyClaim] = {}
    for claim in SubsidyClaim.objects.filter(programme=programme).order_by("pk"):
        latest[(claim.year, claim.month)] = claim
    keys = sorted(set(months) | set(latest), reverse=True)
    return [(year, month, latest.get((year, month))) for year, month in keys]
