"""A claim month's CSV prepared by a worker while the authority's page follows it.

The report of a busy programme-month reads every redemption with its usage
records and invoice lines. The programme page asks for it
(`claim_export_request`); a worker builds it (`claim_export_run`, the task
billing.claim_export, queued through the outbox so a lost broker loses no
request); the page polls its state (queued, running, done) and offers the file.
State and file live in the cache for CLAIM_EXPORT_TTL seconds: long enough to
download it, and no second copy of a claim in the database (the CSV is always
computed from the redemptions).
"""

import secrets
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction

from billing.models import SubsidyProgramme
from billing.subsidy.claim_report import claim_csv
from core.outbox import outbox_enqueue

CLAIM_EXPORT_TTL = 3600
TASK = "billing.claim_export"


@dataclass(frozen=True)
class ClaimExport:
    token: str
    programme_id: int
    year: int
    month: int
    state: str  # queued (waiting for a worker), running, done
    rows: int  # the claim's rows, once done
    csv: str

    @property
    def filename(self) -> str:
        return f"claim-programme-{self.programme_id}-{self.year}-{self.month:02d}.csv"


def _key(token: str) -> str:
    return f"claim-export:{token}"


def claim_export_request(*, programme: SubsidyProgramme, year: int, month: int) -> str:
    """Queue the month's CSV for a worker; the answer is the export's token."""
    token = secrets.token_urlsafe(16)
    state = {"programme": programme.pk, "year": year, "month": month, "state": "queued"}
    cache.set(_key(token), state, CLAIM_EXPORT_TTL)
    with transaction.atomic():
        outbox_enqueue(task_name=TASK, args=[token], key=_key(token))
    return token


def claim_export_get(*, token: str, programme: SubsidyProgramme) -> ClaimExport | None:
    """The export, if it is this programme's and has not expired."""
    data = cache.get(_key(token))
    if not data or data["programme"] != programme.pk:
        return None
    return ClaimExport(
        token=token,
        programme_id=programme.pk,
        year=data["year"],
        month=data["month"],
        state=data["state"],
        rows=data.get("rows", 0),
        csv=data.get("csv", ""),
    )


def claim_export_run(*, token: str) -> int:
    """Build the CSV of a requested export (the worker's part); returns its
    rows. An expired or finished export is left alone (a republished task)."""
    data = cache.get(_key(token))
    if not data or data["state"] == "done":
        return 0
    cache.set(_key(token), {**data, "state": "running"}, CLAIM_EXPORT_TTL)
    programme = SubsidyProgramme.objects.get(pk=data["programme"])
    content = claim_csv(programme=programme, year=data["year"], month=data["month"])
    rows = content.count("\n") - 2  # less the header and the TOTAL lines
    cache.set(
        _key(token), {**data, "state": "done", "rows": rows, "csv": content}, CLAIM_EXPORT_TTL
    )
    return rows
