"""Demo data for the embedded mode: a few organisations and their users.

Idempotent: running it twice changes nothing. Each app's demo data has its own
module here (market, billing, vouchers, activity), seeded in that order.
"""

from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.models import Membership, Organisation

DEMO_PASSWORD = "demo-password-2026"  # noqa: S105 - printed to the newcomer on purpose

DEMO_USERS = [
    ("buyer", "enterprise buyer — 杭州智模科技有限公司"),
    ("provider", "computing centre — 庆阳绿色算力有限公司"),
    ("provider2", "computing centre — 贵安云谷算力有限公司"),
    ("authority", "subsidy authority — 市经济和信息化局"),
]

DEMO_ORGANISATIONS = {
    "buyer": ("buyer", "杭州智模科技有限公司", "91330100716105852F", "浙江"),
    "provider": ("provider", "庆阳绿色算力有限公司", "914403001922038216", "甘肃"),
    "provider2": ("provider", "贵安云谷算力有限公司", "91440300708461136T", "贵州"),
    "authority": ("authority", "市经济和信息化局", "91110108551385082Q", "北京"),
}


@transaction.atomic
def seed_demo() -> None:
    User = get_user_model()
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", "admin@example.com", DEMO_PASSWORD)
    for username, (kind, name, code, region) in DEMO_ORGANISATIONS.items():
        user, created = User.objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        organisation, _ = Organisation.objects.get_or_create(
            credit_code=code,
            defaults={"kind": kind, "legal_name": name, "region": region, "verified": True},
        )
        Membership.objects.get_or_create(
            user=user, defaults={"organisation": organisation, "role": Membership.Role.OWNER}
        )
    from demo import activity, billing, market, vouchers

    for part in (market, billing, vouchers, activity):
        part.seed()
