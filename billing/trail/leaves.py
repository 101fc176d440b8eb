"""What a leaf says: the canonical JSON of one record, recomputable from the row.

Canonical: UTF-8, keys sorted, no spaces; only strings, integers, booleans,
null, lists and objects (amounts are integer fen; decimals and times are
strings; times in UTC, `Z`). A leaf names the records it rests on by their own
leaf hashes (`usage_records`: id -> hash, `invoice_line`: {id, hash}), so a
verifier holding the leaves checks the chain redemption -> line -> usage
without asking the exchange anything else.

Recomputing a logged record's leaf and comparing it with the log is how a
record rewritten after it was logged is found (billing.trail.log.trail_check).

The leaves read the billing rows by their fields, not through billing's
services, so that the trail does not move when billing's code does.
"""

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from billing.models import InvoiceLine, Payment, Redemption, RedemptionEvent, Refund
from billing.trail.tree import leaf_hash
from market.models import UsageRecord

VERSION = 1


def canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _decimal(value: Decimal | int | None) -> str:
    return str(Decimal(value or 0))


def usage_leaf(usage: UsageRecord) -> dict[str, Any]:
    lease = usage.lease
    return {
        "v": VERSION,
        "kind": "usage",
        "id": usage.pk,
        "lease": usage.lease_id,
        "buyer": lease.buyer_id,
        "provider": lease.provider_id,
        "window_start": leaf_time(usage.window_start),
        "window_end": leaf_time(usage.window_end),
        "gpu_seconds_delivered": usage.gpu_seconds_delivered,
        "gpu_seconds_lost": usage.gpu_seconds_lost,
        "energy_wh": _decimal(usage.energy_wh),
        "carbon_g": _decimal(usage.carbon_g),
        "avg_utilisation": _decimal(usage.avg_utilisation),
    }


def usage_hashes(usages) -> dict[str, str]:
    return {str(u.pk): leaf_hash(canonical(usage_leaf(u))).hex() for u in usages}


def line_usage_records(line: InvoiceLine) -> list[UsageRecord]:
    """The usage records behind a line (its evidence, linked to it by billing)."""
    return list(line.usage_records.select_related("lease").order_by("pk"))


def invoice_line_leaf(line: InvoiceLine) -> dict[str, Any]:
    """What an issued line bills, fixed at issue. The voucher share is not in it:
    a claw-back changes it later; the redemption leaves and their status changes
    are its evidence."""
    invoice = line.invoice
    return {
        "v": VERSION,
        "kind": "invoice_line",
        "id": line.pk,
        "invoice": invoice.number,
        "invoice_id": invoice.pk,
        "buyer": invoice.buyer_id,
        "buyer_credit_code": invoice.buyer.credit_code,
        "provider": line.provider_id,
        "provider_credit_code": line.provider.credit_code,
        "line_kind": line.kind,
        "lease": line.lease_id,
        "period_start": leaf_time(invoice.period_start),
        "period_end": leaf_time(invoice.period_end),
        "window_start": leaf_time(line.window_start),
        "window_end": leaf_time(line.window_end),
        "currency": invoice.currency,
        "gpu_seconds": line.gpu_seconds,
        "gpu_seconds_lost": line.gpu_seconds_lost,
        "price_amount": line.price_amount,
        "amount": line.amount,
        "usage_records": usage_hashes(line_usage_records(line)),
    }


def invoice_line_hash(line: InvoiceLine) -> str:
    return leaf_hash(canonical(invoice_line_leaf(line))).hex()


def redemption_leaf(redemption: Redemption) -> dict[str, Any]:
    usages = redemption.usage_records.select_related("lease").order_by("pk")
    line = redemption.invoice_line
    return {
        "v": VERSION,
        "kind": "redemption",
        "id": redemption.pk,
        "programme": redemption.programme_id,
        "voucher": redemption.voucher_id,
        "beneficiary": redemption.beneficiary_id,
        "beneficiary_credit_code": redemption.beneficiary.credit_code,
        "currency": redemption.programme.currency,
        "amount": redemption.amount,
        "rate_bp": redemption.rate_bp,
        "settlement_mode": redemption.settlement_mode,
        "year": redemption.year,
        "invoice_line": {"id": line.pk, "hash": invoice_line_hash(line)},
        "usage_records": usage_hashes(usages),
        "ledger_transaction": redemption.ledger_transaction_id,
    }


def redemption_status_leaf(event: RedemptionEvent) -> dict[str, Any]:
    return {
        "v": VERSION,
        "kind": "redemption_status",
        "id": event.pk,
        "redemption": event.redemption_id,
        "from": event.from_status,
        "to": event.to_status,
        "at": leaf_time(event.at),
        "reason": event.reason,
    }


def payment_leaf(payment: Payment) -> dict[str, Any]:
    return {
        "v": VERSION,
        "kind": "payment",
        "id": payment.pk,
        "invoice": payment.invoice.number,
        "invoice_id": payment.invoice_id,
        "buyer": payment.invoice.buyer_id,
        "attempt": payment.attempt,
        "currency": payment.currency,
        "amount": payment.amount,
        "captured_amount": payment.captured_amount,
        "stripe_payment_intent": payment.stripe_payment_intent_id,
    }


def refund_leaf(refund: Refund) -> dict[str, Any]:
    """Money returned to the buyer's card: what the invoice's payments net to."""
    payment = refund.payment
    return {
        "v": VERSION,
        "kind": "refund",
        "id": refund.pk,
        "payment_id": payment.pk,
        "invoice": payment.invoice.number,
        "invoice_id": payment.invoice_id,
        "buyer": payment.invoice.buyer_id,
        "currency": payment.currency,
        "amount": refund.amount,
        "stripe_refund": refund.stripe_refund_id,
    }
