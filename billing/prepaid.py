"""Prepaid balance and credit (issue 14 part 5).

A buyer may prepay by card (a top-up: a Stripe PaymentIntent through the
gateway, credited when Stripe's event says it succeeded) and staff may grant
it a credit limit. What it may still spend is one figure, computed in one
place (billing.selectors.funding_get):

    available = balance + credit limit − outstanding invoices − unbilled usage

The balance is a liability of the exchange, the ledger's `buyer_credit`
account of the buyer (credit-normal, floored at zero):

    top-up credited          Dr Stripe clearing     / Cr buyer credit
    invoice paid at issue    Dr buyer credit        / Cr buyer receivable

so an invoice draws the balance down once, when it is issued, and its
remainder is paid by card as before: no money is counted twice.

A buyer held to its funding terms (`held`: it chose so, or staff granted it
credit; a top-up alone holds nobody) is stopped at zero: at available ≤ 0 new orders are
refused (`funding_check_order`, called by market.orders through
settings.ORDER_PLACEMENT_CHECKS); under `stop_leases` the beat's sweep also
ends the buyer's running leases (market.leases.lease_end_now) and takes its
orders off the book once the grace period has passed since available first
reached zero. The sweep alerts once per threshold crossing (a notice row on
the buyer's billing page and an e-mail through Django's mail backend) and
starts an automatic top-up once per crossing of its trigger.
"""

import datetime as dt
import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts.models import Organisation
from accounts.webhooks import webhook_emit
from billing import selectors
from billing.gateways import stripe as gateway
from billing.ledger import Leg, account_get, transaction_post
from billing.models import FundingAlert, FundingTerms, Invoice, LedgerAccount, Payment, TopUp
from core import clock, limits
from core.errors import ApplicationError, Conflict
from core.money import format_money
from market.leases import lease_end_now
from market.matching import OPEN_STATUSES
from market.models import Lease, Order
from market.orders import order_release_unfilled

logger = logging.getLogger(__name__)

P = LedgerAccount.Purpose
PI = Payment.Status
AtZero = FundingTerms.AtZero


def _balance_account(*, buyer: Organisation, currency: str) -> LedgerAccount:
    return account_get(
        purpose=P.BUYER_CREDIT, organisation=buyer, currency=currency, floor_zero=True
    )


# --- terms ------------------------------------------------------------------------------


def funding_terms_ensure(*, buyer: Organisation) -> FundingTerms:
    """The buyer's terms, created with the defaults: not held (it pays after
    use, its prepaid balance first), stop new orders at zero once held."""
    if not buyer.is_buyer:
        raise ApplicationError(_("Only a buyer has a prepaid balance."))
    terms, _created = FundingTerms.objects.get_or_create(
        buyer=buyer, defaults={"currency": settings.DEFAULT_CURRENCY}
    )
    return terms


def _amount_error(value: int, *, low: int = 0) -> list[str]:
    if not low <= value <= limits.MAX_AMOUNT:
        return [
            _("Between %(low)s and %(high)s minor units.") % {"low": low, "high": limits.MAX_AMOUNT}
        ]
    return []


def funding_terms_update(
    *,
    buyer: Organisation,
    at_zero: str,
    grace_minutes: int,
    alert_thresholds: list[int],
    auto_top_up: bool,
    auto_top_up_amount: int,
    auto_top_up_below_amount: int,
    auto_top_up_payment_method: str = "",
    held: bool = True,
) -> FundingTerms:
    """The buyer sets whether it is held to available funds, what happens at
    zero, its alerts and its automatic top-up (the credit limit is staff's:
    `credit_limit_set`)."""
    errors: dict[str, list[str]] = {}
    if at_zero not in AtZero.values:
        errors["at_zero"] = [_("Choose stop_orders or stop_leases.")]
    if not 0 <= grace_minutes <= limits.MAX_FUNDING_GRACE_MINUTES:
        errors["grace_minutes"] = [
            _("A grace period is 0 to %(max)s minutes.") % {"max": limits.MAX_FUNDING_GRACE_MINUTES}
        ]
    if len(alert_thresholds) > limits.MAX_ALERT_THRESHOLDS:
        errors["alert_thresholds"] = [
            _("At most %(max)s thresholds.") % {"max": limits.MAX_ALERT_THRESHOLDS}
        ]
    elif any(_amount_error(value) for value in alert_thresholds):
        errors["alert_thresholds"] = _amount_error(-1)
    for field, value, low in (
        ("auto_top_up_amount", auto_top_up_amount, 1 if auto_top_up else 0),
        ("auto_top_up_below_amount", auto_top_up_below_amount, 0),
    ):
        if problem := _amount_error(value, low=low):
            errors[field] = problem
    if auto_top_up and not auto_top_up_payment_method:
        errors["auto_top_up_payment_method"] = [
            _("An automatic top-up needs a saved card (payment method).")
        ]
    if errors:
        raise ApplicationError(_("The funding terms are not valid."), errors=errors)
    terms = funding_terms_ensure(buyer=buyer)
    if not held and terms.credit_limit_amount > 0:
        raise ApplicationError(
            _("With a credit limit you are held to your available funds."),
            errors={"held": [_("Staff granted you credit: paying after use is not open to you.")]},
        )
    FundingTerms.objects.filter(pk=terms.pk).update(
        held=held,
        at_zero=at_zero,
        grace_minutes=grace_minutes,
        alert_thresholds=sorted(set(alert_thresholds), reverse=True),
        auto_top_up=auto_top_up,
        auto_top_up_amount=auto_top_up_amount,
        auto_top_up_below_amount=auto_top_up_below_amount,
        auto_top_up_payment_method=auto_top_up_payment_method,
        updated_at=clock.now(),
    )
    terms.refresh_from_db()
    return terms


def credit_limit_set(*, buyer: Organisation, amount: int) -> FundingTerms:
    """Staff grant (or withdraw, with 0) a buyer's credit limit."""
    if problem := _amount_error(amount):
        raise ApplicationError(
            _("The credit limit is not valid."), errors={"credit_limit_amount": problem}
        )
    terms = funding_terms_ensure(buyer=buyer)
    # credit is a cap: a buyer granted some is held to its available funds
    FundingTerms.objects.filter(pk=terms.pk).update(
        credit_limit_amount=amount, updated_at=clock.now(), **({"held": True} if amount else {})
    )
    terms.refresh_from_db()
    return terms


def at_zero_explained(terms: FundingTerms | None) -> str:
    """What happens at zero, in the words the page and the API both show."""
    if terms is None or not terms.held:
        return _(
            "You pay each invoice by card after use; no spending limit applies. "
            "Top up to pay invoices from a prepaid balance."
        )
    if terms.at_zero == AtZero.STOP_LEASES:
        return _(
            "When available funds reach zero, new orders are refused, and %(minutes)s "
            "minutes later your running leases end and your orders leave the book, "
            "unless you have topped up meanwhile."
        ) % {"minutes": terms.grace_minutes}
    return _(
        "When available funds reach zero, new orders are refused; running leases "
        "and orders already on the book go on, and are invoiced as usual."
    )


def leases_stop_at(terms: FundingTerms | None) -> dt.datetime | None:
    """Under stop_leases, once funds reached zero: when running leases end."""
    if terms is None or terms.exhausted_at is None or terms.at_zero != AtZero.STOP_LEASES:
        return None
    return terms.exhausted_at + dt.timedelta(minutes=terms.grace_minutes)


# --- order placement --------------------------------------------------------------------


def funding_check_order(*, buyer: Organisation, currency: str) -> None:
    """Refuse a new order (409, nothing stored) when the buyer is held to
    funding terms and has nothing available. Called by market.orders through
    settings.ORDER_PLACEMENT_CHECKS."""
    if not FundingTerms.objects.filter(buyer=buyer, held=True).exists():
        return  # pays by card after use: one query, no usage priced
    funding = selectors.funding_get(buyer=buyer, currency=currency)
    if not funding.enforced or funding.available > 0:
        return
    reason = _(
        "Your available funds are %(available)s (balance %(balance)s + credit "
        "%(credit)s − unpaid invoices %(outstanding)s − usage not yet invoiced "
        "%(unbilled)s): new orders are refused until you top up."
    ) % {
        "available": format_money(funding.available, currency),
        "balance": format_money(funding.balance, currency),
        "credit": format_money(funding.credit_limit, currency),
        "outstanding": format_money(funding.outstanding, currency),
        "unbilled": format_money(funding.unbilled, currency),
    }
    raise Conflict(reason, errors={"funding": [reason]})


# --- top-ups ----------------------------------------------------------------------------


def top_up_start(
    *,
    buyer: Organisation,
    amount: int,
    payment_method: str | None = None,
    automatic: bool = False,
    idempotency_key: str | None = None,
) -> tuple[TopUp, bool]:
    """Start a card top-up; (top_up, created). The balance grows only when
    Stripe's event says the PaymentIntent succeeded (`top_up_intent_event`).
    The same Idempotency-Key again returns the first top-up; with another
    amount it is a 409."""
    from billing.payments import customer_ensure, intent_status  # payments imports this module

    if problem := _amount_error(amount, low=1):
        raise ApplicationError(_("The top-up is not valid."), errors={"amount": problem})
    terms = funding_terms_ensure(buyer=buyer)
    key = f"top-up-{buyer.pk}-{idempotency_key or uuid.uuid4().hex}"
    try:
        with transaction.atomic():
            top_up, created = TopUp.objects.get_or_create(
                idempotency_key=key,
                defaults={
                    "buyer": buyer,
                    "amount": amount,
                    "currency": terms.currency,
                    "automatic": automatic,
                },
            )
    except IntegrityError:  # the same key raced in
        top_up, created = TopUp.objects.get(idempotency_key=key), False
    if top_up.amount != amount:
        raise Conflict(
            _("This Idempotency-Key was already used for a different top-up."),
            errors={"idempotency_key": [_("Already used with a different amount.")]},
        )
    if top_up.stripe_payment_intent_id:
        return top_up, created
    try:
        intent = gateway.payment_intent_create(
            amount=amount,
            currency=top_up.currency,
            customer=customer_ensure(organisation=buyer),
            idempotency_key=key,
            transfer_group=f"top-up-{top_up.pk}",
            metadata={"top_up": str(top_up.pk), "buyer": str(buyer.pk)},
            payment_method=payment_method,
            off_session=automatic,
        )
    except gateway.GatewayError as exc:
        logger.warning("top-up intent failed", extra={"top_up": top_up.pk, "error": str(exc)})
        if not exc.retryable:
            _top_up_advance(top_up=top_up, status=PI.FAILED)
        raise ApplicationError(
            _("The card top-up could not be started: %(error)s") % {"error": exc},
            errors={"payment_method": [str(exc)]},
        ) from exc
    TopUp.objects.filter(pk=top_up.pk, stripe_payment_intent_id__isnull=True).update(
        stripe_payment_intent_id=intent["id"], client_secret=intent.get("client_secret") or ""
    )
    _top_up_advance(top_up=top_up, status=intent_status(intent))
    top_up.refresh_from_db()
    return top_up, created


def _top_up_advance(*, top_up: TopUp, status: str) -> bool:
    """Forward only, by the rank payments use."""
    lower = [s for s, rank in Payment.RANK.items() if rank < Payment.RANK[PI(status)]]
    return bool(TopUp.objects.filter(pk=top_up.pk, status__in=lower).update(status=status))


def top_up_intent_event(*, intent: dict[str, Any], status: str) -> None:
    """Apply a PaymentIntent of a top-up as Stripe has it (billing.payments
    fetched it for the event): credit the balance once, by business key."""
    top_up = TopUp.objects.filter(stripe_payment_intent_id=intent["id"]).first()
    if top_up is None:  # the webhook beat our own save of the intent id
        pk = str((intent.get("metadata") or {}).get("top_up") or "")
        top_up = (
            TopUp.objects.filter(pk=pk, stripe_payment_intent_id=None).first()
            if pk.isdigit()
            else None
        )
        if top_up is None:
            logger.warning("event for an unknown top-up", extra={"intent": intent["id"]})
            return
        TopUp.objects.filter(pk=top_up.pk).update(stripe_payment_intent_id=intent["id"])
    with transaction.atomic():
        top_up = TopUp.objects.select_for_update().get(pk=top_up.pk)
        if status != PI.SUCCEEDED:
            _top_up_advance(top_up=top_up, status=status)
            return
        if top_up.status in (PI.CANCELED, PI.FAILED) or not _intent_matches(intent, top_up):
            logger.error("succeeded intent not applied to its top-up", extra={"top_up": top_up.pk})
            return
        _top_up_advance(top_up=top_up, status=PI.SUCCEEDED)
        if top_up.credited_at is None:
            clearing = account_get(purpose=P.STRIPE_CLEARING, currency=top_up.currency)
            balance = _balance_account(buyer=top_up.buyer, currency=top_up.currency)
            transaction_post(
                business_key=f"stripe:payment_intent:{intent['id']}:top_up",
                kind="top_up",
                legs=[Leg(clearing, top_up.amount), Leg(balance, -top_up.amount)],
                memo=f"top-up {top_up.pk}",
            )
            TopUp.objects.filter(pk=top_up.pk, credited_at=None).update(credited_at=clock.now())


def _intent_matches(intent: dict[str, Any], top_up: TopUp) -> bool:
    metadata = intent.get("metadata") or {}
    return (
        intent.get("id") == top_up.stripe_payment_intent_id
        and str(metadata.get("top_up") or "") == str(top_up.pk)
        and intent.get("amount") == top_up.amount
        # localstripe leaves out amount_received; Stripe always sends it.
        and intent.get("amount_received", intent.get("amount")) == top_up.amount
        and str(intent.get("currency") or "").upper() == top_up.currency.upper()
    )


# --- invoices ---------------------------------------------------------------------------


def invoice_pay_from_balance(*, invoice: Invoice) -> int:
    """Pay what the balance covers of an invoice being issued (the caller
    holds the invoice's lock, inside the issue transaction); returns the
    amount. The card pays the remainder, as before."""
    if invoice.outstanding_amount <= 0:
        return 0
    account = LedgerAccount.objects.filter(
        organisation=invoice.buyer,
        purpose=P.BUYER_CREDIT,
        reference="",
        currency=invoice.currency,
    ).first()
    if account is None:
        return 0
    # the balance's row lock: a top-up or another invoice waits for this one
    balance = -LedgerAccount.objects.select_for_update().get(pk=account.pk).balance
    amount = min(balance, invoice.outstanding_amount)
    if amount <= 0:
        return 0
    _txn, created = transaction_post(
        business_key=f"invoice:{invoice.pk}:prepaid",
        kind="invoice_prepaid",
        legs=[
            Leg(account, amount),
            Leg(
                account_get(
                    purpose=P.BUYER_RECEIVABLE,
                    organisation=invoice.buyer,
                    currency=invoice.currency,
                ),
                -amount,
            ),
        ],
        memo=f"{invoice.number} paid from the prepaid balance",
    )
    if not created:
        return 0
    invoice.paid_amount += amount
    invoice.prepaid_amount += amount
    Invoice.objects.filter(pk=invoice.pk).update(
        paid_amount=invoice.paid_amount, prepaid_amount=invoice.prepaid_amount
    )
    return amount


# --- the beat's sweep -------------------------------------------------------------------


def funding_sweep() -> int:
    """Review every buyer held to funding terms; returns how many were reviewed."""
    reviewed = 0
    for terms in FundingTerms.objects.filter(held=True).select_related("buyer").order_by("pk"):
        try:
            funding_review(terms=terms)
        except Exception:  # one buyer's failure never stops the others' review
            logger.exception("funding review failed", extra={"buyer": terms.buyer_id})
        reviewed += 1
    return reviewed


def funding_review(*, terms: FundingTerms) -> None:
    """Note when available first reached zero, alert once per threshold
    crossing, top up automatically once per crossing of the trigger, and
    under `stop_leases` stop the buyer's leases once the grace has passed."""
    now = clock.now()
    buyer = terms.buyer
    available = selectors.funding_get(buyer=buyer, currency=terms.currency).available
    if available <= 0:
        FundingTerms.objects.filter(pk=terms.pk, exhausted_at=None).update(exhausted_at=now)
    else:
        FundingTerms.objects.filter(pk=terms.pk).exclude(exhausted_at=None).update(
            exhausted_at=None, leases_stopped_at=None
        )
    terms.refresh_from_db()
    _alerts_review(terms=terms, available=available, now=now)
    _auto_top_up_review(terms=terms, available=available)
    if (
        terms.at_zero == AtZero.STOP_LEASES
        and terms.exhausted_at is not None
        and now >= terms.exhausted_at + dt.timedelta(minutes=terms.grace_minutes)
    ):
        _leases_stop(terms=terms, now=now)


def _alerts_review(*, terms: FundingTerms, available: int, now: dt.datetime) -> None:
    thresholds = sorted({0, *terms.alert_thresholds}, reverse=True)
    FundingAlert.objects.filter(
        buyer=terms.buyer, cleared_at=None, threshold_amount__lt=available
    ).update(cleared_at=now)
    # a threshold the buyer removed no longer holds an alert open
    FundingAlert.objects.filter(buyer=terms.buyer, cleared_at=None).exclude(
        threshold_amount__in=thresholds
    ).update(cleared_at=now)
    for threshold in thresholds:
        if available > threshold:
            continue
        try:
            with transaction.atomic():
                alert, created = FundingAlert.objects.get_or_create(
                    buyer=terms.buyer,
                    threshold_amount=threshold,
                    cleared_at=None,
                    defaults={
                        "available_amount": available,
                        "currency": terms.currency,
                        "created_at": now,
                    },
                )
        except IntegrityError:  # another sweep wrote it first
            continue
        if created:
            _alert_send(alert=alert, terms=terms)
            webhook_emit(
                organisation_id=terms.buyer_id,
                event_type="funding.alert",
                data={
                    "threshold_amount": threshold,
                    "available_amount": available,
                    "currency": terms.currency,
                    "at_zero": terms.at_zero,
                    "grace_minutes": terms.grace_minutes,
                },
                key=f"funding.alert:{alert.pk}",
            )


def _alert_send(*, alert: FundingAlert, terms: FundingTerms) -> None:
    recipients = sorted(
        {
            email
            for email in get_user_model()
            .objects.filter(memberships__organisation=terms.buyer, is_active=True)
            .values_list("email", flat=True)
            if email
        }
    )
    if not recipients:
        return
    currency = terms.currency
    if alert.threshold_amount == 0:
        subject = _("Your available funds have reached zero")
    else:
        subject = _("Your available funds are at or below %(threshold)s") % {
            "threshold": format_money(alert.threshold_amount, currency)
        }
    body = "\n\n".join(
        [
            _("%(buyer)s: available funds are now %(available)s.")
            % {
                "buyer": terms.buyer.legal_name,
                "available": format_money(alert.available_amount, currency),
            },
            at_zero_explained(terms),
        ]
    )
    try:
        send_mail(subject, body, None, recipients)
    except Exception:  # the notice on the page stands; the mail is logged as lost
        logger.exception("funding alert e-mail failed", extra={"alert": alert.pk})
        return
    FundingAlert.objects.filter(pk=alert.pk).update(emailed_to=", ".join(recipients)[:500])


def _auto_top_up_review(*, terms: FundingTerms, available: int) -> None:
    if available > terms.auto_top_up_below_amount:
        if not terms.auto_top_up_armed:
            FundingTerms.objects.filter(pk=terms.pk).update(auto_top_up_armed=True)
        return
    if not (terms.auto_top_up and terms.auto_top_up_payment_method):
        return
    # one automatic top-up per crossing of the trigger: disarm first, exactly once
    if not FundingTerms.objects.filter(pk=terms.pk, auto_top_up_armed=True).update(
        auto_top_up_armed=False
    ):
        return
    try:
        top_up_start(
            buyer=terms.buyer,
            amount=terms.auto_top_up_amount,
            payment_method=terms.auto_top_up_payment_method,
            automatic=True,
        )
    except ApplicationError:
        logger.warning("automatic top-up failed", extra={"buyer": terms.buyer_id})


def _leases_stop(*, terms: FundingTerms, now: dt.datetime) -> None:
    reason = _("available funds reached zero and the %(minutes)s-minute grace passed") % {
        "minutes": terms.grace_minutes
    }
    for order in Order.objects.filter(buyer=terms.buyer, status__in=OPEN_STATUSES):
        order_release_unfilled(order=order, reason=f"funds exhausted: {reason}")
    for lease in Lease.objects.filter(buyer=terms.buyer, status=Lease.Status.ACTIVE).order_by("pk"):
        try:
            lease_end_now(lease=lease, actor=None, reason=reason, ended_by="the exchange")
        except Conflict:  # it ended meanwhile
            continue
    FundingTerms.objects.filter(pk=terms.pk, leases_stopped_at=None).update(leases_stopped_at=now)
