"""Compute vouchers (算力券), entered here.

services.py writes programmes, vouchers and applications; selectors.py reads
them; redemption.py lets vouchers pay their share of an invoice at issue (and
holds or claws back a redemption); rules.py says which usage a programme pays
for and at what rate; accounts.py names the ledger accounts of a programme;
fraud.py raises flags for review; claims.py is the authority's claim workflow
and claim_report.py the monthly claim it audits; charts.py draws the budget.
Outside this package, import only the names listed in `__all__`."""

from billing.subsidy import claims, fraud, redemption, selectors, services
from billing.subsidy.charts import budget_burn_down_svg
from billing.subsidy.claim_export import (
    ClaimExport,
    claim_export_get,
    claim_export_request,
    claim_export_run,
)
from billing.subsidy.claim_report import claim_csv, claim_months, claim_rows, claim_summary
from billing.subsidy.claims import claims_by_month
from billing.subsidy.redemption import (
    VoucherPreview,
    invoice_redeem_vouchers,
    invoice_voucher_preview,
)
from billing.subsidy.reimbursement import (
    invoice_pending_reimbursements,
    reimbursement_reject,
    reimbursement_submit,
)
from billing.subsidy.services import programme_create, voucher_issue

__all__ = [
    "ClaimExport",
    "claim_export_get",
    "claim_export_request",
    "claim_export_run",
    "VoucherPreview",
    "budget_burn_down_svg",
    "claim_csv",
    "claim_months",
    "claim_rows",
    "claim_summary",
    "claims",
    "claims_by_month",
    "fraud",
    "invoice_pending_reimbursements",
    "invoice_redeem_vouchers",
    "invoice_voucher_preview",
    "programme_create",
    "redemption",
    "reimbursement_reject",
    "reimbursement_submit",
    "selectors",
    "services",
    "voucher_issue",
]
