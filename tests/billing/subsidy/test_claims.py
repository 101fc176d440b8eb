"""The claim for a fixture month equals the hand-checked file in data/."""

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from billing.models import Redemption
from billing.subsidy.claim_report import claim_csv, claim_rows, claim_summary
from billing.subsidy.redemption import (
    invoice_redeem_vouchers,
    redemption_claw_back,
    redemption_hold,
)
from tests.billing.subsidy.factories import invoice_with_lines, programme, usage_line_spec, voucher
from tests.factories import OrganisationFactory, make_credit_code

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")
DATA = Path(__file__).parent / "data"


def _org(kind, name, seed, **kwargs):
    return OrganisationFactory(
        kind=kind, legal_name=name, credit_code=make_credit_code(seed), **kwargs
    )


def _at(day, hour):
    return dt.datetime(2026, 5, day, hour, tzinfo=SHANGHAI)


@time_machine.travel(dt.datetime(2026, 6, 5, 9, tzinfo=SHANGHAI), tick=False)
def test_the_may_2026_claim_matches_the_hand_checked_file():
    # given: a 30 % programme, 50 % on domestic accelerators, 40 % for SMEs
    authority = _org("authority", "Qingyang Bureau of Industry", 110_000_001)
    gansu = _org("provider", "Gansu Green Compute Co., Ltd.", 510_000_001)
    guizhou = _org("provider", "Guizhou Cloud Valley Compute Co., Ltd.", 520_000_001)
    zhimo = _org("buyer", "Hangzhou Zhimo AI Co., Ltd.", 330_000_001)
    vision = _org("buyer", "Chengdu Vision Tech Co., Ltd.", 610_000_001, is_sme=True)
    prog = programme(
        authority,
        rate_bp=3_000,
        domestic_rate_bp=5_000,
        sme_rate_bp=4_000,
        valid_from=dt.datetime(2026, 4, 1, tzinfo=SHANGHAI),
        valid_until=dt.datetime(2026, 12, 31, tzinfo=SHANGHAI),
    )
    start = dt.datetime(2026, 4, 1, tzinfo=SHANGHAI)
    voucher(prog, zhimo, 1_000_000, valid_from=start)
    voucher(prog, vision, 1_000_000, valid_from=start)

    def settle(buyer, provider, when, amount, slug="nvidia-h800-sxm"):
        invoice = invoice_with_lines(
            buyer,
            [usage_line_spec(provider=provider, amount=amount, gpu_slug=slug, window_start=when)],
            start=when,
        )
        invoice_redeem_vouchers(invoice=invoice)
        return invoice.lines.get()

    l1 = settle(zhimo, gansu, _at(3, 10), 1_000_000)
    l2 = settle(zhimo, guizhou, _at(10, 14), 500_000, "huawei-ascend-910b3")
    l3 = settle(vision, gansu, _at(20, 9), 123_457)
    settle(zhimo, gansu, dt.datetime(2026, 4, 28, 12, tzinfo=SHANGHAI), 200_000)  # April
    held = settle(vision, gansu, _at(25, 9), 100_000)  # held for review: not claimed
    redemption_hold(redemption=Redemption.objects.get(invoice_line=held))
    gone = settle(zhimo, guizhou, _at(30, 9), 10_000)  # clawed back: not claimed
    redemption_claw_back(redemption=Redemption.objects.get(invoice_line=gone), reason="audit")

    # when
    produced = claim_csv(programme=prog, year=2026, month=5)

    # then
    ids = {}
    for n, line in enumerate((l1, l2, l3), start=1):
        ids[f"u{n}"], ids[f"l{n}"] = line.usage_links.get().usage_record_id, line.lease_id
    expected = (DATA / "claim_2026_05.csv").read_text(encoding="utf-8").format(**ids)
    assert produced == expected
    groups = claim_summary(claim_rows(programme=prog, year=2026, month=5))
    assert [(g.provider[:5], g.enterprise[:5], g.subsidy_amount) for g in groups] == [
        ("Gansu", "Cheng", 49_383),
        ("Gansu", "Hangz", 300_000),
        ("Guizh", "Hangz", 250_000),
    ]
