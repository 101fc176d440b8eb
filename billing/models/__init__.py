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
