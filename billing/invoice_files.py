"""Files a buyer downloads about its invoices, for its bookkeeping.

- The usage records behind one invoice line (its evidence): one row per
  5-minute metering window, then the line's total, which is the line's
  GPU-seconds priced once (records are never priced one by one).
- The invoice as a PDF (WeasyPrint), in the reader's language: the same
  lines, shares and totals as the page, the buyer's legal name and unified
  social credit code. Chinese text needs a CJK font on the machine (fontconfig
  finds it; `.ci/run` installs fonts-wqy-zenhei when there is none).

CSV files are UTF-8 with a byte-order mark, so Excel on Windows opens them.
"""

import csv
import io
from dataclasses import dataclass

from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import Invoice, InvoiceLine
from billing.selectors import invoice_history, invoice_line_usage_records, invoice_shares
from core.money import format_major

BOM = "\ufeff"


@dataclass(frozen=True)
class Download:
    filename: str
    content: bytes
    content_type: str


def _local(at) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")


def line_usage_csv(*, line: InvoiceLine) -> Download:
    """One row per usage record of the line, then the line's total."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [
            _("Window start"),
            _("Window end"),
            _("GPU-seconds delivered"),
            _("GPU-seconds lost (not billed)"),
            _("GPU-seconds of start-up grace (not billed)"),
            _("Average utilisation (%)"),
            _("Energy (Wh)"),
            _("Carbon (g CO2e)"),
        ]
    )
    for record in invoice_line_usage_records(line=line):
        writer.writerow(
            [
                _local(record.window_start),
                _local(record.window_end),
                record.gpu_seconds_delivered,
                record.gpu_seconds_lost,
                record.gpu_seconds_grace,
                record.avg_utilisation,
                record.energy_wh,
                record.carbon_g,
            ]
        )
    writer.writerow(
        [
            _("Line total"),
            "",
            line.gpu_seconds,
            line.gpu_seconds_lost,
            "",
            "",
            "",
            "",
        ]
    )
    writer.writerow(
        [
            _("Amount (GPU-seconds × price per GPU-hour ÷ 3600, rounded once)"),
            "",
            format_major(line.amount),
            line.invoice.currency,
            "",
            "",
            "",
            "",
        ]
    )
    return Download(
        filename=f"{line.invoice.number}-line-{line.pk}-usage.csv",
        content=(BOM + out.getvalue()).encode("utf-8"),
        content_type="text/csv; charset=utf-8",
    )


def invoice_pdf(*, invoice: Invoice) -> Download:
    """The invoice as a PDF in the active language (WeasyPrint)."""
    from weasyprint import CSS, HTML  # heavy: loaded when a PDF is asked for

    html = render_to_string(
        "billing/invoice_pdf.html",
        {
            "invoice": invoice,
            "shares": invoice_shares(invoice=invoice),
            "history": invoice_history(invoice=invoice),
        },
    )
    stylesheet = finders.find("css/invoice-pdf.css")
    pdf = HTML(string=html).write_pdf(stylesheets=[CSS(filename=stylesheet)])
    return Download(filename=f"{invoice.number}.pdf", content=pdf, content_type="application/pdf")
