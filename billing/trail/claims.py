"""A claim under the trail: sealed with the tree head it was computed under,
and the audit report an authority checks with `exchange-verify audit-claim`.

The report's figures are read from the billing rows as they are now; the
verifier compares each with the leaves logged under the claim's head. A record
rewritten after it was logged, or a redemption missing from the log, shows as
a disagreement the exchange cannot hide: the head is signed.
"""

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.models import Redemption, SubsidyClaim, TrailLeaf
from billing.trail import heads
from billing.trail.leaves import leaf_time, line_usage_records

K = TrailLeaf.Kind


def claim_month_bounds(*, year: int, month: int) -> tuple[dt.datetime, dt.datetime]:
    """The claim's month of usage, in the exchange's time zone (as claims count it)."""
    tz = timezone.get_current_timezone()
    start = dt.datetime(year, month, 1, tzinfo=tz)
    return start, dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)


def claim_seal(*, claim: SubsidyClaim) -> SubsidyClaim:
    """Log what is pending and sign a tree head for the claim to carry (in the
    caller's transaction: the claim and its head commit together)."""
    with transaction.atomic():
        head = heads.tree_head_sign()
        SubsidyClaim.objects.filter(pk=claim.pk).update(tree_head=head)
    claim.tree_head = head
    return claim


def _leaf_indices(kind: str, ids: list[int]) -> dict[int, int]:
    rows = TrailLeaf.objects.filter(kind=kind, record_id__in=ids)
    return dict(rows.values_list("record_id", "index"))


def head_json(head) -> dict[str, Any] | None:
    if head is None:
        return None
    return {
        "tree_size": head.tree_size,
        "root_hash": head.root_hash,
        "timestamp_ms": heads.timestamp_ms(head.timestamp),
        "key_id": head.key_id,
        "signature": head.signature,
    }


def claim_audit_report(*, claim: SubsidyClaim) -> dict[str, Any]:
    """The claim, row by row (one per redemption), with the tree head it was
    computed under and where each record sits in the log."""
    redemptions = list(
        claim.redemptions.select_related(
            "beneficiary", "invoice_line__invoice__buyer", "invoice_line__provider"
        )
        .prefetch_related("usage_records")
        .order_by("pk")
    )
    lines = [r.invoice_line for r in redemptions]
    usage_of_line = {line.pk: line_usage_records(line) for line in lines}
    usage_ids = sorted({u.pk for usages in usage_of_line.values() for u in usages})
    where = {
        K.REDEMPTION: _leaf_indices(K.REDEMPTION, [r.pk for r in redemptions]),
        K.INVOICE_LINE: _leaf_indices(K.INVOICE_LINE, [line.pk for line in lines]),
        K.USAGE: _leaf_indices(K.USAGE, usage_ids),
    }
    rows = [_row(r, usage_of_line[r.invoice_line_id], where) for r in redemptions]
    programme = claim.programme
    start, end = claim_month_bounds(year=claim.year, month=claim.month)
    return {
        "claim": claim.pk,
        "programme": {"id": programme.pk, "name": programme.name},
        "year": claim.year,
        "month": claim.month,
        "usage_from": leaf_time(start),
        "usage_until": leaf_time(end),
        "status": claim.status,
        "currency": claim.currency,
        "deduct_amount": claim.deduct_amount,
        "reimburse_amount": claim.reimburse_amount,
        "total_amount": claim.total_amount,
        "tree_head": head_json(claim.tree_head),
        "rows": rows,
    }


def _row(redemption: Redemption, usages: list, where: dict) -> dict[str, Any]:
    line = redemption.invoice_line
    usage_ids = [u.pk for u in usages]
    return {
        "redemption": redemption.pk,
        "invoice_line": line.pk,
        "invoice": line.invoice.number,
        "lease": line.lease_id,
        "usage_records": usage_ids,
        "usage": [
            {
                "id": u.pk,
                "window_start": leaf_time(u.window_start),
                "gpu_seconds_delivered": u.gpu_seconds_delivered,
                "gpu_seconds_lost": u.gpu_seconds_lost,
            }
            for u in usages
        ],
        "provider_credit_code": line.provider.credit_code,
        "enterprise_credit_code": line.invoice.buyer.credit_code,
        "beneficiary_credit_code": redemption.beneficiary.credit_code,
        "gpu_seconds": line.gpu_seconds,
        "gross_amount": line.amount,
        "rate_bp": redemption.rate_bp,
        "subsidy_amount": redemption.amount,
        "settlement_mode": redemption.settlement_mode,
        "leaf_index": {
            "redemption": where[K.REDEMPTION].get(redemption.pk),
            "invoice_line": where[K.INVOICE_LINE].get(line.pk),
            "usage_records": {str(u): where[K.USAGE].get(u) for u in usage_ids},
        },
    }
