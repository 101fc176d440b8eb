"""Writes for subsidy programmes, vouchers and voucher applications.

Redemption at settlement and the authority's review of redemptions live in
billing.subsidy.redemption; the accounts are described in billing.subsidy.accounts.
Lock order everywhere: programme row, then voucher rows (by pk), then ledger
accounts (by pk, inside transaction_post) — so nothing deadlocks.
"""

import datetime as dt
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from accounts.models import Organisation
from billing.ledger import InsufficientBalance, Leg, transaction_post
from billing.models import (
    SubsidyProgramme,
    Voucher,
    VoucherApplication,
)
from billing.subsidy.accounts import programme_accounts, voucher_account
from core import clock, limits
from core.errors import ApplicationError, Conflict
from core.transitions import status_record, transition

Funding = SubsidyProgramme.Funding
VS = Voucher.Status
AS = VoucherApplication.Status
OPEN_VOUCHER_STATES = (VS.ISSUED, VS.ACTIVE, VS.EXHAUSTED)


def _amount_error(amount: int) -> str | None:
    if not 0 < amount <= limits.MAX_AMOUNT:
        return f"An amount is more than zero and at most {limits.MAX_AMOUNT} minor units."
    return None


def _validate_programme(fields: dict[str, Any]) -> None:
    """Every bound of core.limits the database also holds, plus the rules a
    CHECK cannot say: a currency the exchange settles in, and a window that
    is not wholly in the past."""
    errors: dict[str, list[str]] = {}
    if error := _amount_error(fields["budget_amount"]):
        errors["budget_amount"] = [error]
    currency = fields.get("currency", settings.DEFAULT_CURRENCY)
    if currency not in settings.EXCHANGE_CURRENCIES:
        errors["currency"] = [
            f"The exchange settles in {', '.join(settings.EXCHANGE_CURRENCIES)} only."
        ]
    for name in ("rate_bp", "domestic_rate_bp", "sme_rate_bp"):
        value = fields.get(name)
        if value is not None and not 0 < value <= limits.MAX_BASIS_POINTS:
            errors[name] = ["A rate is between 1 and 10,000 basis points (0.01 %–100 %)."]
    if fields["valid_until"] <= fields["valid_from"]:
        errors["valid_until"] = ["The programme must end after it starts."]
    elif fields["valid_until"] <= clock.now():
        errors["valid_until"] = ["The programme's window has already ended."]
    elif fields["valid_until"] - fields["valid_from"] > limits.MAX_PROGRAMME_LENGTH:
        errors["valid_until"] = [
            f"A programme runs at most {limits.MAX_PROGRAMME_LENGTH.days} days."
        ]
    green = Decimal(fields.get("min_green_share") or 0)
    if not 0 <= green <= 1:
        errors["min_green_share"] = ["A share is between 0 and 1."]
    for name in ("cap_per_enterprise_amount", "cap_per_enterprise_year_amount"):
        value = fields.get(name)
        if value is not None and not 0 < value <= limits.MAX_AMOUNT:
            errors[name] = [
                f"A cap is more than zero and at most {limits.MAX_AMOUNT} minor units "
                "(leave it empty for no cap)."
            ]
    days = fields.get("max_contract_days")
    if days is not None and not 0 < days <= limits.MAX_CONTRACT_DAYS:
        errors["max_contract_days"] = [
            f"A contract term is 1 to {limits.MAX_CONTRACT_DAYS} days (leave it empty for none)."
        ]
    if errors:
        raise ApplicationError("The programme is not valid.", errors=errors)


@transaction.atomic
def programme_create(
    *,
    authority: Organisation,
    eligible_providers: list[Organisation] | None = None,
    **fields: Any,
) -> SubsidyProgramme:
    """Create a programme and fund its budget in the ledger (pledge / left)."""
    if not authority.is_authority:
        raise ApplicationError("Only a subsidy authority runs programmes.")
    _validate_programme(fields)
    programme = SubsidyProgramme.objects.create(authority=authority, **fields)
    if eligible_providers:
        programme.eligible_providers.set(eligible_providers)
    accounts = programme_accounts(programme=programme)
    transaction_post(
        business_key=f"programme:{programme.pk}:fund",
        kind="programme_fund",
        legs=[
            Leg(accounts.pledge, programme.budget_amount),
            Leg(accounts.left, -programme.budget_amount),
        ],
        memo=f"Budget of {programme.name}",
    )
    return programme


def programme_close(*, programme: SubsidyProgramme) -> SubsidyProgramme:
    updated = SubsidyProgramme.objects.filter(
        pk=programme.pk, status=SubsidyProgramme.Status.ACTIVE
    ).update(status=SubsidyProgramme.Status.CLOSED)
    if updated != 1:
        raise Conflict("The programme is already closed.")
    programme.refresh_from_db()
    return programme


def _holder_problem(programme: SubsidyProgramme, holder: Organisation) -> str:
    wanted = (
        Organisation.Kind.PROVIDER
        if programme.beneficiary == SubsidyProgramme.Beneficiary.PROVIDERS
        else Organisation.Kind.BUYER
    )
    if holder.kind != wanted:
        return f"This programme grants vouchers to {programme.get_beneficiary_display()}."
    if programme.buyer_must_be_verified and not holder.verified:
        return "This programme grants vouchers to verified organisations only."
    return ""


@transaction.atomic
def voucher_issue(
    *,
    programme: SubsidyProgramme,
    holder: Organisation,
    face_amount: int,
    valid_from: dt.datetime | None = None,
    valid_until: dt.datetime | None = None,
    actor: User | None = None,
    application: VoucherApplication | None = None,
) -> Voucher:
    """Grant a voucher. A reserved-funding programme moves the face value from
    budget left to the voucher; the floored budget account refuses to commit
    more than is left."""
    programme = SubsidyProgramme.objects.select_for_update().get(pk=programme.pk)
    now = clock.now()
    valid_from = max(valid_from or now, programme.valid_from)
    valid_until = min(valid_until or programme.valid_until, programme.valid_until)
    errors: dict[str, list[str]] = {}
    if programme.status != SubsidyProgramme.Status.ACTIVE or now >= programme.valid_until:
        errors["programme"] = ["The programme is closed."]
    if problem := _holder_problem(programme, holder):
        errors["holder"] = [problem]
    if error := _amount_error(face_amount):
        errors["face_amount"] = [error]
    if valid_until <= valid_from:
        errors["valid_until"] = ["The voucher must end after it starts, within the programme."]
    elif valid_until <= now:
        errors["valid_until"] = ["The voucher's validity has already ended."]
    if errors:
        raise ApplicationError("The voucher cannot be issued.", errors=errors)
    status = VS.ACTIVE if valid_from <= now else VS.ISSUED
    voucher = Voucher.objects.create(
        programme=programme,
        holder=holder,
        face_amount=face_amount,
        currency=programme.currency,
        valid_from=valid_from,
        valid_until=valid_until,
        status=status,
        issued_by=actor,
        application=application,
    )
    status_record(voucher, new=status, actor=actor, reason="issued")
    accounts = programme_accounts(programme=programme)
    source = accounts.left if programme.funding == Funding.RESERVED else accounts.entitlements
    try:
        transaction_post(
            business_key=f"voucher:{voucher.pk}:issue",
            kind="voucher_issue",
            legs=[Leg(source, face_amount), Leg(voucher_account(voucher=voucher), -face_amount)],
            memo=f"Voucher {voucher.pk} to {holder}",
        )
    except InsufficientBalance as exc:
        left = accounts.left
        left.refresh_from_db()
        raise ApplicationError(
            "The programme's budget cannot cover this voucher.",
            errors={"face_amount": [f"Only {left.normal_balance} is left to commit."]},
        ) from exc
    return voucher


def _voucher_close(
    *, voucher: Voucher, to_status: str, actor=None, reason: str = "", now: dt.datetime
) -> Voucher:
    """Expire or revoke: the unused balance goes back where it came from."""
    with transaction.atomic():
        programme = SubsidyProgramme.objects.select_for_update().get(pk=voucher.programme_id)
        locked = Voucher.objects.select_for_update().get(pk=voucher.pk)
        if locked.status not in OPEN_VOUCHER_STATES:
            raise Conflict(f"The voucher is already {locked.get_status_display()}.")
        transition(locked, old=locked.status, new=to_status, actor=actor, reason=reason)
        voucher_return_balance(programme=programme, voucher=locked, key_suffix=to_status)
    voucher.refresh_from_db()
    return voucher


def voucher_return_balance(
    *, programme: SubsidyProgramme, voucher: Voucher, key_suffix: str
) -> int:
    """Move a voucher's unused balance back to the programme; the amount moved."""
    account = voucher_account(voucher=voucher)
    account.refresh_from_db()
    rest = account.normal_balance
    if rest <= 0:
        return 0
    accounts = programme_accounts(programme=programme)
    target = accounts.left if programme.funding == Funding.RESERVED else accounts.entitlements
    transaction_post(
        business_key=f"voucher:{voucher.pk}:return:{key_suffix}",
        kind="voucher_return",
        legs=[Leg(account, rest), Leg(target, -rest)],
        memo=f"Unused balance of voucher {voucher.pk} ({key_suffix})",
    )
    return rest


def voucher_revoke(*, voucher: Voucher, actor: User | None = None, reason: str) -> Voucher:
    if not reason.strip():
        raise ApplicationError("Say why.", errors={"reason": ["A reason is required."]})
    return _voucher_close(
        voucher=voucher, to_status=VS.REVOKED, actor=actor, reason=reason, now=clock.now()
    )


def voucher_expire(*, voucher: Voucher, now: dt.datetime | None = None) -> Voucher:
    now = now or clock.now()
    if voucher.valid_until > now:
        raise ApplicationError("The voucher is still valid.")
    return _voucher_close(voucher=voucher, to_status=VS.EXPIRED, reason="validity ended", now=now)


def vouchers_expire_due(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Beat task body: activate vouchers whose validity began, expire those
    whose validity ended (returning their unused balance). Safe to run twice."""
    now = now or clock.now()
    activated = 0
    for voucher in Voucher.objects.filter(
        status=VS.ISSUED, valid_from__lte=now, valid_until__gt=now
    ):
        with transaction.atomic():
            if transition(voucher, old=VS.ISSUED, new=VS.ACTIVE, reason="validity began"):
                activated += 1
    expired = 0
    for voucher in Voucher.objects.filter(status__in=OPEN_VOUCHER_STATES, valid_until__lte=now):
        try:
            voucher_expire(voucher=voucher, now=now)
            expired += 1
        except Conflict:
            continue
    return {"activated": activated, "expired": expired}


# --- applications ---------------------------------------------------------------


@transaction.atomic
def application_create(
    *,
    applicant: Organisation,
    programme: SubsidyProgramme,
    purpose: str,
    expected_gpu_hours: int,
    requested_amount: int,
    actor: User | None = None,
) -> VoucherApplication:
    errors: dict[str, list[str]] = {}
    if programme.status != SubsidyProgramme.Status.ACTIVE or clock.now() >= programme.valid_until:
        errors["programme"] = ["The programme is closed."]
    elif problem := _holder_problem(programme, applicant):
        errors["programme"] = [problem]
    if error := _amount_error(requested_amount):
        errors["requested_amount"] = [error]
    if not 0 < expected_gpu_hours <= limits.MAX_GPU_HOURS:
        errors["expected_gpu_hours"] = [f"Expect 1 to {limits.MAX_GPU_HOURS} GPU-hours."]
    if not purpose.strip():
        errors["purpose"] = ["Say what the compute is for."]
    if errors:
        raise ApplicationError("The application is not valid.", errors=errors)
    application = VoucherApplication.objects.create(
        programme=programme,
        applicant=applicant,
        purpose=purpose.strip(),
        expected_gpu_hours=expected_gpu_hours,
        requested_amount=requested_amount,
    )
    status_record(application, new=AS.PENDING, actor=actor, reason="submitted")
    return application


def _application_decide(application, new: str, actor, reason: str, amount: int | None) -> None:
    decided = transition(
        application,
        old=AS.PENDING,
        new=new,
        actor=actor,
        reason=reason,
        approved_amount=amount,
        decision_reason=reason[:300],
        decided_by=actor,
        decided_at=clock.now(),
    )
    if not decided:
        raise Conflict("The application was already decided.")


@transaction.atomic
def application_approve(
    *,
    application: VoucherApplication,
    amount: int,
    actor: User | None = None,
    valid_until: dt.datetime | None = None,
) -> Voucher:
    """Approve with an amount (at most what was asked) and issue the voucher."""
    if amount <= 0 or amount > application.requested_amount:
        raise ApplicationError(
            "The approved amount is not valid.",
            errors={"amount": ["Approve a positive amount, at most the amount requested."]},
        )
    _application_decide(application, AS.APPROVED, actor, "", amount)
    return voucher_issue(
        programme=application.programme,
        holder=application.applicant,
        face_amount=amount,
        valid_until=valid_until,
        actor=actor,
        application=application,
    )


def application_reject(
    *, application: VoucherApplication, reason: str, actor: User | None = None
) -> VoucherApplication:
    if not reason.strip():
        raise ApplicationError("Say why.", errors={"reason": ["A reason is required."]})
    with transaction.atomic():
        _application_decide(application, AS.REJECTED, actor, reason.strip(), None)
    application.refresh_from_db()
    return application


def application_withdraw(
    *, application: VoucherApplication, actor: User | None = None
) -> VoucherApplication:
    with transaction.atomic():
        _application_decide(application, AS.WITHDRAWN, actor, "withdrawn by the applicant", None)
    application.refresh_from_db()
    return application
