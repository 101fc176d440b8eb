"""Demo data for billing: bank payout details for the demo providers.
Invoices appear by themselves once the market's demo leases are metered."""

from accounts.models import Organisation
from billing.models import PayoutAccount, PayoutMethod

DEMO_BANK_DETAILS = {
    "914403001922038216": (
        "6222 0227 0300 1234 567",
        "中国工商银行庆阳分行",
        "102826000015",
        "甘肃",
        "庆阳",
    ),
    "91440300708461136T": (
        "6217 0037 1000 2345 678",
        "中国建设银行贵安新区支行",
        "105705000018",
        "贵州",
        "贵安",
    ),
}


def seed() -> None:
    for code, (number, bank, bank_code, province, city) in DEMO_BANK_DETAILS.items():
        provider = Organisation.objects.filter(credit_code=code).first()
        if provider is None:
            continue
        PayoutAccount.objects.get_or_create(
            provider=provider,
            defaults={
                "method": PayoutMethod.BANK_TRANSFER,
                "account_number": number.replace(" ", ""),
                "account_name": provider.legal_name,
                "bank_name": bank,
                "bank_code": bank_code,
                "province": province,
                "city": city,
            },
        )
