from billing.models.invoices import (
    Invoice,
    InvoiceEvent,
    InvoiceLine,
    InvoiceLineUsage,
    SlaCredit,
)
from billing.models.ledger import LedgerAccount, LedgerTransaction, Posting
from billing.models.payments import Payment, Refund, StripeEvent
from billing.models.payouts import Payout, PayoutAccount, PayoutLine, PayoutMethod, PayoutRun

__all__ = [
    "Invoice",
    "InvoiceEvent",
    "InvoiceLine",
    "InvoiceLineUsage",
    "LedgerAccount",
    "LedgerTransaction",
    "Posting",
    "SlaCredit",
    "Payment",
    "Refund",
    "StripeEvent",
    "Payout",
    "PayoutAccount",
    "PayoutLine",
    "PayoutMethod",
    "PayoutRun",
]
from billing.models.subsidy import (  # noqa: E402 - appended by the vouchers part
    FraudFlag,
    Redemption,
    RedemptionEvent,
    SubsidyProgramme,
    SubsidyRefusal,
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
    "SubsidyRefusal",
    "Voucher",
    "VoucherApplication",
    "VoucherApplicationEvent",
    "VoucherEvent",
]
from billing.models.claims import (  # noqa: E402 - claims part
    Reimbursement,
    SubsidyClaim,
    SubsidyClaimEvent,
)

__all__ += ["Reimbursement", "SubsidyClaim", "SubsidyClaimEvent"]
from billing.models.contracts import FrameworkAgreement  # noqa: E402 - contracts part

__all__ += ["FrameworkAgreement"]
from billing.models.trail import TrailLeaf, TreeHead  # noqa: E402 - the subsidy trail

__all__ += ["TrailLeaf", "TreeHead"]
from billing.models.prepaid import FundingAlert, FundingTerms, TopUp  # noqa: E402 - prepaid

__all__ += ["FundingAlert", "FundingTerms", "TopUp"]
