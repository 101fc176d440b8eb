"""Auditing a claim against the trail, fen by fen.

For each row of the claim (one redemption): the redemption, its invoice line
and each usage record behind it must be leaves of the tree the claim was
computed under (inclusion proofs, checked here); the leaves must name each
other by hash (redemption -> line -> usage); and what the claim says must be
what was logged: the subsidy, the gross, the rate, the mode, the GPU-seconds
and the firms. The subsidy never exceeds rate x gross; the rows add up to the
claim's totals. With `full`, the whole log is downloaded and recomputed, and
every redemption of the programme logged for the month (and standing: not
held or clawed back) must be in the claim, and nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from trail_verify.heads import TreeHead
from trail_verify.verifier import Leaf, VerificationFailed, Verifier


@dataclass
class ClaimAudit:
    claim: int
    programme: int
    period: str
    head: TreeHead | None = None
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rows: int = 0
    leaves_proved: int = 0
    subsidy_proved_amount: int = 0
    claimed_amount: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "programme": self.programme,
            "period": self.period,
            "tree_head": self.head.to_json() if self.head else None,
            "ok": self.ok,
            "rows": self.rows,
            "leaves_proved": self.leaves_proved,
            "subsidy_proved_amount": self.subsidy_proved_amount,
            "claimed_amount": self.claimed_amount,
            "checks": self.checks,
            "problems": self.problems,
        }


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def _ceil_share(amount: int, rate_bp: int) -> int:
    return -(-amount * rate_bp // 10_000)


class _Leaves:
    """Leaves proved under one head, each fetched once."""

    def __init__(self, verifier: Verifier, head: TreeHead, audit: ClaimAudit):
        self.verifier, self.head, self.audit = verifier, head, audit
        self.cache: dict[tuple[str, int], Leaf] = {}

    def get(self, kind: str, record_id: int) -> Leaf | None:
        key = (kind, record_id)
        if key not in self.cache:
            try:
                self.cache[key] = self.verifier.leaf(self.head, kind=kind, record_id=record_id)
            except VerificationFailed as exc:
                self.audit.problems.append(f"{kind} {record_id}: {exc}")
                return None
            except RuntimeError as exc:  # the exchange would not show it
                self.audit.problems.append(f"{kind} {record_id} is not in the log: {exc}")
                return None
            self.audit.leaves_proved += 1
        return self.cache[key]


def _same(audit: ClaimAudit, what: str, claimed: Any, logged: Any) -> bool:
    if claimed != logged:
        audit.problems.append(f"{what}: the claim says {claimed}, the log says {logged}")
        return False
    return True


def audit_claim(verifier: Verifier, report: dict[str, Any], *, full: bool = False) -> ClaimAudit:
    audit = ClaimAudit(
        claim=report["claim"],
        programme=report["programme"]["id"],
        period=f"{report['year']}-{report['month']:02d}",
        claimed_amount=report["total_amount"],
    )
    if not report.get("tree_head"):
        audit.problems.append("the claim carries no signed tree head: it cannot be audited")
        return audit
    try:
        head, proved = verifier.accept_head(report["tree_head"])
    except VerificationFailed as exc:
        audit.problems.append(f"the claim's tree head is refused: {exc}")
        return audit
    audit.head = head
    audit.checks.append(f"tree head signed by key {head.key_id}: {head.short()}")
    audit.checks += [f"consistent with a head seen before: {p}" for p in proved]
    leaves = _Leaves(verifier, head, audit)
    per_mode: dict[str, int] = defaultdict(int)
    for row in report["rows"]:
        audit.rows += 1
        if _audit_row(audit, leaves, report, row):
            audit.subsidy_proved_amount += row["subsidy_amount"]
        per_mode[row["settlement_mode"]] += row["subsidy_amount"]
    _audit_totals(audit, report, per_mode)
    if full:
        _audit_completeness(audit, verifier, head, report)
    return audit


def _audit_row(audit: ClaimAudit, leaves: _Leaves, report: dict, row: dict) -> bool:
    before = len(audit.problems)
    rid = row["redemption"]
    redemption = leaves.get("redemption", rid)
    line = leaves.get("invoice_line", row["invoice_line"])
    if redemption is None or line is None:
        return False
    r, ln = redemption.body, line.body
    what = f"redemption {rid}"
    _same(audit, f"{what}: programme", report["programme"]["id"], r["programme"])
    _same(audit, f"{what}: subsidy (fen)", row["subsidy_amount"], r["amount"])
    _same(audit, f"{what}: rate (bp)", row["rate_bp"], r["rate_bp"])
    _same(audit, f"{what}: settlement mode", row["settlement_mode"], r["settlement_mode"])
    _same(
        audit, f"{what}: beneficiary", row["beneficiary_credit_code"], r["beneficiary_credit_code"]
    )
    _same(audit, f"{what}: currency", report["currency"], r["currency"])
    _same(audit, f"{what}: invoice line", row["invoice_line"], r["invoice_line"]["id"])
    _same(audit, f"{what}: invoice line's hash", r["invoice_line"]["hash"], line.hash)
    what = f"invoice line {row['invoice_line']}"
    _same(audit, f"{what}: gross (fen)", row["gross_amount"], ln["amount"])
    _same(audit, f"{what}: GPU-seconds", row["gpu_seconds"], ln["gpu_seconds"])
    _same(audit, f"{what}: provider", row["provider_credit_code"], ln["provider_credit_code"])
    _same(audit, f"{what}: enterprise", row["enterprise_credit_code"], ln["buyer_credit_code"])
    _same(audit, f"{what}: lease", row["lease"], ln["lease"])
    if r["amount"] > _ceil_share(ln["amount"], r["rate_bp"]):
        audit.problems.append(
            f"redemption {rid}: pays {_yuan(r['amount'])}, more than "
            f"{r['rate_bp'] / 100:g} % of the line's {_yuan(ln['amount'])}"
        )
    _audit_usage(audit, leaves, row, r, ln)
    return len(audit.problems) == before


def _audit_usage(audit: ClaimAudit, leaves: _Leaves, row: dict, r: dict, ln: dict) -> None:
    rid = row["redemption"]
    claimed = {u["id"]: u for u in row["usage"]}
    _same(
        audit,
        f"redemption {rid}: usage records",
        sorted(claimed),
        sorted(int(i) for i in r["usage_records"]),
    )
    delivered = 0
    for usage_id, usage_hash in sorted(ln["usage_records"].items(), key=lambda kv: int(kv[0])):
        usage = leaves.get("usage", int(usage_id))
        if usage is None:
            continue
        u = usage.body
        delivered += u["gpu_seconds_delivered"]
        what = f"usage record {usage_id}"
        _same(audit, f"{what}: hash named by invoice line {ln['id']}", usage_hash, usage.hash)
        if usage_id in r["usage_records"]:
            _same(
                audit,
                f"{what}: hash named by redemption {rid}",
                r["usage_records"][usage_id],
                usage.hash,
            )
        _same(audit, f"{what}: lease", ln["lease"], u["lease"])
        mine = claimed.get(int(usage_id))
        if mine is not None:
            _same(
                audit,
                f"{what}: GPU-seconds delivered",
                mine["gpu_seconds_delivered"],
                u["gpu_seconds_delivered"],
            )
            _same(
                audit, f"{what}: GPU-seconds lost", mine["gpu_seconds_lost"], u["gpu_seconds_lost"]
            )
            _same(audit, f"{what}: window", mine["window_start"], u["window_start"])
    _same(
        audit,
        f"invoice line {ln['id']}: GPU-seconds of its usage records",
        ln["gpu_seconds"],
        delivered,
    )


def _audit_totals(audit: ClaimAudit, report: dict, per_mode: dict[str, int]) -> None:
    totals = [
        ("total", report["total_amount"], sum(per_mode.values())),
        ("deduct-mode total", report["deduct_amount"], per_mode.get("deduct", 0)),
        ("reimburse-mode total", report["reimburse_amount"], per_mode.get("reimburse", 0)),
    ]
    for what, claimed, added in totals:
        if claimed != added:
            audit.problems.append(
                f"the claim's {what} is {_yuan(claimed)}, its rows add up to {_yuan(added)}"
            )
    if totals[0][1] == totals[0][2]:
        audit.checks.append(f"the {audit.rows} rows add up to the claim: {_yuan(totals[0][1])}")


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _audit_completeness(
    audit: ClaimAudit, verifier: Verifier, head: TreeHead, report: dict
) -> None:
    """The whole log, recomputed: the claim lists exactly the standing redemptions
    the programme logged for the month."""
    try:
        every = verifier.replay(head)
    except (VerificationFailed, RuntimeError) as exc:
        audit.problems.append(f"the whole log could not be verified: {exc}")
        return
    audit.checks.append(f"downloaded all {len(every)} leaves and recomputed the signed root")
    usage_start = {
        leaf.record_id: _parse(leaf.body["window_start"]) for leaf in every if leaf.kind == "usage"
    }
    status: dict[int, str] = {}
    for leaf in every:
        if leaf.kind == "redemption_status":
            status[leaf.body["redemption"]] = leaf.body["to"]
    start, end = _parse(report["usage_from"]), _parse(report["usage_until"])
    logged = {}
    for leaf in every:
        if leaf.kind != "redemption" or leaf.body["programme"] != audit.programme:
            continue
        starts = [usage_start.get(int(u)) for u in leaf.body["usage_records"]]
        first = min((s for s in starts if s is not None), default=None)
        if (
            first is not None
            and start <= first < end
            and status.get(leaf.record_id, "applied") == "applied"
        ):
            logged[leaf.record_id] = leaf.body["amount"]
    claimed = {row["redemption"] for row in report["rows"]}
    for rid in sorted(set(logged) - claimed):
        audit.problems.append(
            f"redemption {rid} ({_yuan(logged[rid])}) is logged for this programme and month "
            "but missing from the claim"
        )
    for rid in sorted(claimed - set(logged)):
        audit.problems.append(
            f"redemption {rid} is in the claim but not logged as standing for the month"
        )
    if set(logged) == claimed:
        audit.checks.append(
            f"the claim lists exactly the {len(logged)} standing redemptions logged for "
            f"programme {audit.programme} in {audit.period}: {_yuan(sum(logged.values()))}"
        )
