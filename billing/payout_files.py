"""Files finance and providers download about payouts.

- The run's bank batch file (批量转账), as billing.payouts stored it, for the
  operator to upload to the bank. It names the platform's paying account and
  every provider's bank details, so only staff get it.
- A provider's statement of one payout: which invoice shares it carries and
  what each transfer moved. Providers get this rather than their row of the
  batch file: the batch file only lists bank-transfer payouts (Connect
  providers would get nothing), its one row truncates the invoice list to the
  bank's 60-character remark, and it is an instruction to the bank, not a
  reconciliation the provider can match against its invoices.

Both are UTF-8 with a byte-order mark, so Excel on Windows opens the Chinese
headers and names correctly.
"""

import csv
import io
import re
from dataclasses import dataclass

from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import Payout, PayoutRun
from core.money import format_major

BOM = "\ufeff"
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Download:
    filename: str
    content: bytes


def _filename_part(text: str) -> str:
    return _UNSAFE_IN_FILENAME.sub("-", text).strip("-.") or "run"


def _encoded(text: str) -> bytes:
    return (BOM + text).encode("utf-8")


def bank_batch_download(*, run: PayoutRun) -> Download | None:
    """The run's stored bank batch file; None until the run has completed."""
    if run.status != PayoutRun.Status.COMPLETED or not run.bank_batch_csv:
        return None
    return Download(
        filename=f"bank-batch-{_filename_part(run.key)}.csv", content=_encoded(run.bank_batch_csv)
    )


def payout_statement_download(*, payout: Payout) -> Download:
    """One row per invoice share of the payout, then the total."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [
            _("Payout run"),
            _("Payout reference"),
            _("Method"),
            _("Status"),
            _("Invoice"),
            _("Period start"),
            _("Period end"),
            _("Amount (CNY)") if payout.currency == "CNY" else _("Amount"),
            _("Transferred"),
            _("Stripe transfer"),
        ]
    )
    common = [payout.run.key, payout.reference, payout.get_method_display(), payout.status]
    lines = payout.lines.select_related("invoice").order_by("invoice__period_start", "pk")
    for line in lines:
        invoice = line.invoice
        writer.writerow(
            [
                *common,
                invoice.number,
                timezone.localtime(invoice.period_start).date().isoformat(),
                timezone.localtime(invoice.period_end).date().isoformat(),
                format_major(line.amount),
                format_major(line.transferred_amount) if line.stripe_transfer_id else "",
                line.stripe_transfer_id,
            ]
        )
    writer.writerow([*common, _("Total"), "", "", format_major(payout.amount), "", ""])
    filename = (
        f"payout-statement-{_filename_part(payout.run.key)}-{_filename_part(payout.reference)}.csv"
    )
    return Download(filename=filename, content=_encoded(out.getvalue()))
