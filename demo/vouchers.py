"""Demo data of the subsidy part: one programme of the demo authority and a
voucher for the demo buyer. Idempotent: runs after demo.billing."""

import datetime as dt

from accounts.models import Organisation
from billing.models import SubsidyProgramme, Voucher
from billing.subsidy import programme_create, voucher_issue
from core import clock

PROGRAMME_NAME = "2026 算力券 · compute vouchers for AI enterprises"


def seed() -> None:
    authority = Organisation.objects.filter(credit_code="91110108551385082Q").first()
    buyer = Organisation.objects.filter(credit_code="91330100716105852F").first()
    if authority is None or buyer is None:
        return
    programme = SubsidyProgramme.objects.filter(authority=authority, name=PROGRAMME_NAME).first()
    if programme is None:
        now = clock.now()
        programme = programme_create(
            authority=authority,
            name=PROGRAMME_NAME,
            budget_amount=50_000_000_00,  # ¥50 million
            rate_bp=3_000,
            domestic_rate_bp=5_000,
            sme_rate_bp=4_000,
            cap_per_enterprise_amount=2_000_000_00,
            cap_per_enterprise_year_amount=1_000_000_00,
            valid_from=now - dt.timedelta(days=30),
            valid_until=now + dt.timedelta(days=335),
            forbid_affiliated=True,
        )
    if not Voucher.objects.filter(programme=programme, holder=buyer).exists():
        voucher_issue(
            programme=programme,
            holder=buyer,
            face_amount=500_000_00,
            valid_from=clock.now() - dt.timedelta(days=30),
        )
