"""A month of subsidised usage, settled and claimed: the trail's test world.

May 2026 (Asia/Shanghai): two buyers use a provider's GPUs, a 30 % programme
pays its share of four lines, one buyer pays its share by card, one redemption
is held for review (left out of the claim), and the authority's claim for May
is submitted on 5 June, sealed with a signed tree head. ¥36.00 per GPU-hour,
so one GPU-second is one fen.
"""

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from accounts.models import Organisation
from billing.models import Invoice, Payment, Redemption, SubsidyClaim, SubsidyProgramme
from billing.subsidy import invoice_redeem_vouchers
from billing.subsidy.claims import claim_submit
from billing.subsidy.redemption import redemption_hold
from tests.billing.subsidy.factories import (
    invoice_with_lines,
    programme,
    spread_organisation,
    usage_line_spec,
    voucher,
)
from tests.factories import member_of

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLAIM_DAY = dt.datetime(2026, 6, 5, 9, tzinfo=SHANGHAI)


def may(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 5, day, hour, tzinfo=SHANGHAI)


@dataclass
class TrailWorld:
    authority: Organisation
    authority_user: object
    programme: SubsidyProgramme
    invoices: list[Invoice]
    held: Redemption
    payment: Payment
    claim: SubsidyClaim


def trail_world() -> TrailWorld:
    """Call inside `time_machine.travel(CLAIM_DAY)`."""
    authority = spread_organisation(Organisation.Kind.AUTHORITY, legal_name="Qingyang Bureau")
    provider = spread_organisation(Organisation.Kind.PROVIDER, legal_name="Gansu Green Compute")
    zhimo = spread_organisation(Organisation.Kind.BUYER, legal_name="Hangzhou Zhimo AI")
    vision = spread_organisation(Organisation.Kind.BUYER, legal_name="Chengdu Vision Tech")
    prog = programme(
        authority,
        name="Qingyang compute vouchers 2026",
        rate_bp=3_000,
        valid_from=dt.datetime(2026, 4, 1, tzinfo=SHANGHAI),
        valid_until=dt.datetime(2026, 12, 31, tzinfo=SHANGHAI),
    )
    for buyer in (zhimo, vision):
        voucher(prog, buyer, 1_000_000, valid_from=dt.datetime(2026, 4, 1, tzinfo=SHANGHAI))

    def settle(buyer, amounts_at):
        specs = [
            usage_line_spec(provider=provider, amount=amount, window_start=when)
            for amount, when in amounts_at
        ]
        invoice = invoice_with_lines(buyer, specs, start=amounts_at[0][1])
        invoice_redeem_vouchers(invoice=invoice)
        return invoice

    first = settle(zhimo, [(720_000, may(3, 10)), (288_000, may(4, 10))])
    second = settle(vision, [(123_457, may(20, 9))])
    third = settle(vision, [(100_000, may(25, 9))])
    held = Redemption.objects.get(invoice_line__invoice=third)
    redemption_hold(redemption=held, reason="utilisation looks idle")
    payment = Payment.objects.create(
        invoice=first,
        attempt=1,
        idempotency_key=f"invoice-{first.pk}-attempt-1",
        amount=first.buyer_amount,
        currency="CNY",
        status=Payment.Status.SUCCEEDED,
        captured_amount=first.buyer_amount,
        stripe_payment_intent_id="pi_trail_world_1",
    )
    claim = claim_submit(programme=prog, year=2026, month=5)
    return TrailWorld(
        authority=authority,
        authority_user=member_of(authority, "trail-authority"),
        programme=prog,
        invoices=[first, second, third],
        held=held,
        payment=payment,
        claim=claim,
    )
