from billing.models.invoices import Invoice, InvoiceEvent, InvoiceLine
from billing.models.ledger import LedgerAccount, LedgerTransaction, Posting

__all__ = [
    "Invoice",
    "InvoiceEvent",
    "InvoiceLine",
    "LedgerAccount",
    "LedgerTransaction",
    "Posting",
]
from billing.models.subsidy import (  # noqa: E402
    FraudFlag,
    Redemption,
    RedemptionEvent,
    SubsidyProgramme,
    Voucher,
    VoucherApplication,
    VoucherApplicationEvent,
    VoucherEvent,
)

__all__ += [
    "FraudFlag",
    "Redemption",
    "RedemptionEvent",
    "SubsidyProgramme",
    "Voucher",
    "VoucherApplication",
    "VoucherApplicationEvent",
    "VoucherEvent",
]
