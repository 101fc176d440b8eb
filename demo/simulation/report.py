"""The end report of a simulation: figures read back from the exchange's own
tables, the invariants checked against them and the agents' ground truth, a
terminal rendering and an HTML page with pygal charts.

Every figure is a function of the database and the loop's observations in
simulated time, so the same seed gives the same report; wall-clock figures are
kept apart (`Report.wall`) and left out of `Report.comparable()`.
"""

from __future__ import annotations

import datetime as dt
import html
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, F, Sum

from billing.ledger import ledger_is_balanced
from billing.models import (
    FraudFlag,
    Invoice,
    InvoiceLine,
    InvoiceLineUsage,
    Payout,
    PayoutLine,
    Redemption,
    SubsidyClaim,
)
from core.money import amount_for_gpu_seconds
from demo.simulation.agents import AgentModel
from demo.simulation.driver import SHANGHAI, Observations, Options
from demo.simulation.world import Cast
from market.models import Lease, NodeHealthEvent, Order, UsageRecord
from market.telemetry import lease_end, provider_reliability

HOUR = 3600


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    options: dict
    figures: dict
    tables: dict[str, list[tuple]]
    series: dict[str, list[tuple[str, dict[str, float]]]]
    checks: list[Check]
    wall: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def comparable(self) -> dict:
        """Everything but wall-clock figures (same seed → equal)."""
        return {
            "options": self.options,
            "figures": self.figures,
            "tables": self.tables,
            "series": self.series,
            "checks": [(c.name, c.ok, c.detail) for c in self.checks],
        }


def _yuan(fen: int | None) -> str:
    return f"¥{(fen or 0) / 100:,.2f}"


def _gpu_h(seconds: int | None) -> float:
    return round((seconds or 0) / HOUR, 1)


def _uninvoiced(usage) -> int:
    """What the metered usage not on an issued invoice is worth (the open
    period's, billed at its close), rounded once per price."""
    pending = (
        usage.exclude(
            invoice_link__line__invoice__status__in=[Invoice.Status.OPEN, Invoice.Status.PAID]
        )
        .values("lease__price_amount")
        .annotate(seconds=Sum("gpu_seconds_delivered"))
    )
    return sum(
        amount_for_gpu_seconds(
            gpu_seconds=row["seconds"] or 0, price_amount=row["lease__price_amount"]
        )
        for row in pending
    )


def report_build(
    *, options: Options, cast: Cast, model: AgentModel, observations: Observations
) -> Report:
    orders = Order.objects.filter(pk__in=observations.placed)
    status = dict(orders.values_list("status").annotate(n=Count("pk")).order_by())
    placed = len(observations.placed)
    waits = [
        (observations.first_fill[pk] - t) / 60
        for pk, (t, _kind) in observations.placed.items()
        if pk in observations.first_fill
    ]
    usage = UsageRecord.objects.all()
    totals = usage.aggregate(
        d=Sum("gpu_seconds_delivered"), lost=Sum("gpu_seconds_lost"), e=Sum("energy_wh"),
        c=Sum("carbon_g"),
    )  # fmt: skip
    invoices = Invoice.objects.exclude(status=Invoice.Status.VOID).exclude(
        status=Invoice.Status.DRAFT
    )
    money = invoices.aggregate(
        gross=Sum("gross_amount"), fees=Sum("platform_fee_amount"),
        vouchers=Sum("voucher_amount"), buyer=Sum("buyer_amount"), paid=Sum("paid_amount"),
        net=Sum("provider_net_amount"),
    )  # fmt: skip
    applied = Redemption.objects.exclude(status=Redemption.Status.CLAWED_BACK)
    migrated = Lease.objects.filter(status=Lease.Status.MIGRATED)
    failed_over = sum(
        lease.gpu_count * max(0, (lease.ends_at - lease_end(lease)).total_seconds())
        for lease in migrated
    )
    figures = {
        "orders placed": placed,
        "orders by kind": dict(
            sorted(
                {
                    k: sum(1 for _t, kind in observations.placed.values() if kind == k)
                    for k in ("training", "inference", "batch")
                }.items()
            )
        ),
        "orders filled": status.get(Order.Status.FILLED, 0),
        "orders partially filled": status.get(Order.Status.PARTIALLY_FILLED, 0),
        "orders expired": status.get(Order.Status.EXPIRED, 0),
        "orders still open": status.get(Order.Status.OPEN, 0),
        "fill rate": f"{(len(observations.first_fill) / placed if placed else 0):.1%}",
        "median time to fill (min)": round(statistics.median(waits), 1) if waits else None,
        "orders that waited for capacity, median wait (min)": _waited(waits),
        "leases made": Lease.objects.count(),
        "GPU-hours delivered": _gpu_h(totals["d"]),
        "GPU-hours lost to faults": _gpu_h(totals["lost"]),
        "GPU-hours failed over": _gpu_h(int(failed_over)),
        "leases failed over": migrated.count(),
        "faults injected": dict(sorted(model.faults.items())),
        "node health changes": dict(
            NodeHealthEvent.objects.values_list("to_state")
            .annotate(n=Count("pk"))
            .order_by("to_state")
        ),
        "telemetry samples": observations.samples,
        "real agent runs (HTTP)": observations.real_agent_runs,
        "re-pricings": observations.reprices,
        "mean utilisation": f"{statistics.fmean(u for _t, u in observations.utilisation):.1%}"
        if observations.utilisation
        else "n/a",
        "invoices issued": invoices.count(),
        "invoices paid": invoices.filter(status=Invoice.Status.PAID).count(),
        "revenue (gross billed)": _yuan(money["gross"]),
        "usage of open periods, not yet invoiced": _yuan(_uninvoiced(usage)),
        "platform fees": _yuan(money["fees"]),
        "provider shares": _yuan(money["net"]),
        "card payments captured": _yuan(money["paid"]),
        "payouts": f"{Payout.objects.count()} for "
        + _yuan(Payout.objects.aggregate(s=Sum("amount"))["s"]),
        "subsidy spent / budget": f"{_yuan(applied.aggregate(s=Sum('amount'))['s'])} / "
        + _yuan(cast.programme.budget_amount if cast.programme else 0),
        "subsidy claims paid": SubsidyClaim.objects.filter(paid_at__isnull=False).count(),
        "fraud flags raised": FraudFlag.objects.count(),
        "energy (MWh)": round(float(totals["e"] or 0) / 1e6, 3),
        "carbon (t CO2e)": round(float(totals["c"] or 0) / 1e6, 3),
        "scheduled task failures": len(observations.task_failures),
    }
    return Report(
        options=_options(options),
        figures=figures,
        tables=_tables(cast, end=observations.end),
        series=_series(observations),
        checks=invariants_check(model=model, observations=observations, cast=cast),
    )


def _waited(waits: list[float]) -> str:
    later = [w for w in waits if w > 0]
    return f"{len(later)}, {statistics.median(later):.0f}" if later else "0"


def _options(options: Options) -> dict:
    return {
        "hours": options.hours, "seed": options.seed, "providers": options.providers,
        "nodes": options.nodes, "buyers": options.buyers, "orders": options.orders,
        "fault rate": options.fault_rate, "never reporting": options.never_reporting,
        "real agents": options.real_agents, "start": options.start.isoformat(),
    }  # fmt: skip


def _tables(cast: Cast, *, end: float) -> dict[str, list[tuple]]:
    by_model = (
        UsageRecord.objects.values_list("lease__node__gpu_model__slug")
        .annotate(d=Sum("gpu_seconds_delivered"), lost=Sum("gpu_seconds_lost"))
        .order_by("lease__node__gpu_model__slug")
    )
    by_hub = (
        UsageRecord.objects.values_list("lease__node__site__hub")
        .annotate(d=Sum("gpu_seconds_delivered"), e=Sum("energy_wh"), c=Sum("carbon_g"))
        .order_by("lease__node__site__hub")
    )
    scores = provider_reliability(
        [p.pk for p in cast.providers], now=dt.datetime.fromtimestamp(end, tz=dt.UTC)
    )
    names = {p.pk: p.legal_name for p in cast.providers}
    ranked = sorted(scores.items(), key=lambda kv: (kv[1], names[kv[0]]))
    return {
        "GPU-hours by model (delivered, lost)": [
            (slug, _gpu_h(d), _gpu_h(lost)) for slug, d, lost in by_model
        ],
        "by hub (GPU-hours, energy MWh, carbon t)": [
            (hub, _gpu_h(d), round(float(e or 0) / 1e6, 3), round(float(c or 0) / 1e6, 3))
            for hub, d, e, c in by_hub
        ],
        "least reliable providers": [(names[pk], str(score)) for pk, score in ranked[:5]],
    }


def _series(observations: Observations) -> dict[str, list[tuple[str, dict[str, float]]]]:
    def label(t: float) -> str:
        return dt.datetime.fromtimestamp(t, tz=SHANGHAI).strftime("%d %H:%M")

    return {
        "price (¥ per PFLOPS-hour)": [
            (label(t), {k: round(v, 2) for k, v in prices.items()})
            for t, prices in observations.prices
        ],
        "utilisation": [(label(t), {"all": round(u, 4)}) for t, u in observations.utilisation],
    }


# --- invariants ----------------------------------------------------------------


def invariants_check(*, model: AgentModel, observations: Observations, cast: Cast) -> list[Check]:
    return [
        _ledger_balanced(),
        _no_gpu_twice(),
        _invoice_lines_backed(),
        _windows_metered(model, end=observations.end),
        _subsidy_bounded(cast),
        _payouts_are_shares(),
        _never_reporting_never_leased(model),
    ]


def _ledger_balanced() -> Check:
    from billing.models import Posting

    unbalanced = (
        Posting.objects.values("transaction").annotate(total=Sum("amount")).exclude(total=0).count()
    )
    ok = ledger_is_balanced() and unbalanced == 0
    return Check(
        "ledger balanced", ok, f"{unbalanced} unbalanced transactions; Σ postings = 0: {ok}"
    )


def _no_gpu_twice() -> Check:
    """Sweep each node's leases: GPUs held at any instant ≤ the node's GPUs."""
    by_node: dict[int, list[tuple[float, int]]] = defaultdict(list)
    sizes = {}
    for lease in Lease.objects.exclude(status__in=[Lease.Status.CANCELLED]).select_related("node"):
        end = lease_end(lease)
        if end <= lease.starts_at:
            continue
        by_node[lease.node_id] += [
            (lease.starts_at.timestamp(), lease.gpu_count),
            (end.timestamp(), -lease.gpu_count),
        ]
        sizes[lease.node_id] = lease.node.gpu_count
    over = []
    for node_id, events in by_node.items():
        held = 0
        for _t, delta in sorted(events, key=lambda e: (e[0], e[1])):
            held += delta
            if held > sizes[node_id]:
                over.append(node_id)
                break
    return Check("no GPU allocated twice", not over, f"{len(by_node)} nodes swept; over: {over}")


def _lines_not_matching_their_records(lines):
    """Usage lines whose GPU-seconds are not the sum of their usage records'."""
    summed = lines.annotate(evidence=Sum("usage_records__gpu_seconds_delivered"))
    return summed.exclude(gpu_seconds=F("evidence"))


def _invoice_lines_backed() -> Check:
    usage_lines = InvoiceLine.objects.filter(kind=InvoiceLine.Kind.USAGE)
    unbacked = usage_lines.filter(usage_links__isnull=True).count()
    mismatched = _lines_not_matching_their_records(usage_lines).count()
    # one line per lease per period; a record is on at most one line (the link's
    # unique key): count records linked twice to show it
    doubled = (
        InvoiceLineUsage.objects.values("usage_record").annotate(n=Count("pk")).filter(n__gt=1)
    ).count()
    ok = unbacked == 0 and mismatched == 0 and doubled == 0
    return Check(
        "invoice lines backed by usage, each record on ≤ 1 line",
        ok,
        f"{usage_lines.count()} lines; unbacked {unbacked}, not matching their records "
        f"{mismatched}, records on two lines {doubled}",
    )


def _windows_metered(model: AgentModel, *, end: float) -> Check:
    """Every metered lease has a record for every closed window from its start,
    allocated = GPUs × window; a window with no tick stored near it is all lost."""
    size = settings.METERING_WINDOW_SECONDS
    silent = settings.TELEMETRY_INTERVAL_SECONDS * settings.TELEMETRY_SILENT_INTERVALS
    horizon = end - settings.METERING_GRACE_SECONDS
    gaps, wrong_size, billed_silence = [], 0, 0
    records = defaultdict(list)
    for lease_id, ws, we, d, lost, grace in UsageRecord.objects.values_list(
        "lease",
        "window_start",
        "window_end",
        "gpu_seconds_delivered",
        "gpu_seconds_lost",
        "gpu_seconds_grace",
    ).order_by("lease", "window_start"):
        # the agent's start-up grace is neither delivered nor lost (not billed, not a fault)
        records[lease_id].append((ws.timestamp(), we.timestamp(), d, lost + grace))
    leases = Lease.objects.filter(
        status__in=[Lease.Status.ACTIVE, Lease.Status.COMPLETED, Lease.Status.FAILED,
                    Lease.Status.MIGRATED],
    )  # fmt: skip
    for lease in leases:
        start, stop = lease.starts_at.timestamp(), min(lease_end(lease).timestamp(), horizon)
        expected = []
        t = start
        while t < stop:
            end = min((t // size + 1) * size, lease_end(lease).timestamp())
            if end > horizon:
                break
            expected.append((t, end))
            t = end
        got = records.get(lease.pk, [])
        if [(a, b) for a, b, _d, _l in got[: len(expected)]] != expected:
            gaps.append(lease.pk)
            continue
        ticks = model.ticks.get(lease.node_id, set())
        for a, b, d, lost in got:
            if d + lost != round(lease.gpu_count * (b - a)):
                wrong_size += 1
            if d and not any(a - silent <= tick < b for tick in ticks):
                billed_silence += 1
    ok = not gaps and not wrong_size and not billed_silence
    return Check(
        "every closed window metered; silent windows lost",
        ok,
        f"{len(records)} leases metered; leases with a missing window {gaps[:10]}, "
        f"records of the wrong size {wrong_size}, silent windows delivered {billed_silence}",
    )


def _subsidy_bounded(cast: Cast) -> Check:
    applied = Redemption.objects.exclude(status=Redemption.Status.CLAWED_BACK)
    problems = []
    programme = cast.programme
    if programme is not None:
        spent = applied.filter(programme=programme).aggregate(s=Sum("amount"))["s"] or 0
        if spent > programme.budget_amount:
            problems.append(f"spent {spent} > budget {programme.budget_amount}")
        cap = min(programme.cap_per_enterprise_amount, programme.cap_per_enterprise_year_amount)
        for beneficiary, total in (
            applied.filter(programme=programme)
            .values_list("voucher__holder")
            .annotate(s=Sum("amount"))
            .order_by()
        ):
            if total > cap:
                problems.append(f"organisation {beneficiary}: {total} > cap {cap}")
    # never for fault time: a voucher pays at most its line, and a line bills only
    # the delivered seconds of its usage records (lost seconds are never billed)
    over_line = 0
    for redemption in applied.select_related("invoice_line"):
        line = redemption.invoice_line
        if line is not None and redemption.amount > line.amount:
            over_line += 1
    lost_billed = _lines_not_matching_their_records(
        InvoiceLine.objects.filter(kind=InvoiceLine.Kind.USAGE, voucher_amount__gt=0)
    ).count()
    ok = not problems and not over_line and not lost_billed
    return Check(
        "subsidy ≤ budget, ≤ caps, never for fault time",
        ok,
        f"{applied.count()} redemptions; {problems[:3]}; above their line {over_line}; "
        f"subsidised lines billing lost time {lost_billed}",
    )


def _payouts_are_shares() -> Check:
    """Each payout line = the provider's nets on that invoice = its lines' amounts − fees."""
    nets = dict(
        (
            (invoice, provider),
            (net, amount - fee),
        )
        for invoice, provider, net, amount, fee in InvoiceLine.objects.values_list(
            "invoice", "provider"
        )
        .annotate(n=Sum("provider_net_amount"), a=Sum("amount"), f=Sum("fee_amount"))
        .values_list("invoice", "provider", "n", "a", "f")
        .order_by()
    )
    wrong = [
        (line.invoice_id, line.provider_id)
        for line in PayoutLine.objects.all()
        if nets.get((line.invoice_id, line.provider_id), (None, None))[0] != line.amount
    ]
    fee_wrong = [key for key, (net, share) in nets.items() if net != share]
    paid_total = Payout.objects.aggregate(s=Sum("amount"))["s"] or 0
    lines_total = PayoutLine.objects.aggregate(s=Sum("amount"))["s"] or 0
    ok = not wrong and not fee_wrong and paid_total == lines_total
    return Check(
        "payouts = provider shares − fees",
        ok,
        f"{PayoutLine.objects.count()} payout lines ({_yuan(paid_total)}); not the provider's "
        f"net {wrong[:5]}; nets ≠ amount − fee {fee_wrong[:5]}",
    )


def _never_reporting_never_leased(model: AgentModel) -> Check:
    ids = model.never_reporting_ids()
    leased = Lease.objects.filter(node_id__in=ids).count()
    return Check(
        "a node that never reports is never leased",
        leased == 0,
        f"{len(ids)} silent-from-birth nodes; leases on them {leased}",
    )


# --- rendering -------------------------------------------------------------------


def report_print(report: Report, console) -> None:
    from rich.table import Table

    table = Table(title="Simulated market — figures", show_header=False)
    for name, value in report.figures.items():
        table.add_row(name, _text(value))
    console.print(table)
    for title, rows in report.tables.items():
        sub = Table(title=title, show_header=False)
        for row in rows:
            sub.add_row(*[_text(v) for v in row])
        console.print(sub)
    checks = Table(title="Invariants")
    checks.add_column("check")
    checks.add_column("result")
    checks.add_column("detail")
    for check in report.checks:
        checks.add_row(
            check.name, "[green]PASS[/]" if check.ok else "[bold red]FAIL[/]", check.detail
        )
    console.print(checks)
    if report.wall:
        console.print("Wall clock: " + ", ".join(f"{k} {v}" for k, v in report.wall.items()))


def _text(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "—"
    if isinstance(value, Decimal | float):
        return f"{value:,}"
    return str(value)


CHARTED_FIGURES = {
    "orders": ["orders placed", "orders filled", "orders partially filled", "orders expired",
               "orders still open"],
    "faults injected": ["faults injected"],
    "GPU-hours": ["GPU-hours delivered", "GPU-hours lost to faults", "GPU-hours failed over"],
}  # fmt: skip


def report_html(report: Report) -> str:
    # the house style: no script tag (pygal would load its tooltips from a CDN)
    from core.charts import bar_chart, line_chart

    charts = []
    for title, points in report.series.items():
        chart = line_chart(title=title, x_label_rotation=40, width=900, height=360)
        labels = [label for label, _values in points]
        chart.x_labels = labels
        chart.x_labels_major = labels[:: max(1, len(labels) // 12)]
        keys = sorted({k for _l, values in points for k in values})
        for key in keys:
            chart.add(key, [values.get(key) for _l, values in points])
        charts.append(chart.render(is_unicode=True))
    for title, keys in CHARTED_FIGURES.items():
        bar = bar_chart(title=title, width=900, height=300)
        for key in keys:
            value = report.figures.get(key)
            if isinstance(value, dict):
                for name, count in value.items():
                    bar.add(str(name), count)
            elif isinstance(value, int | float):
                bar.add(key, value)
        charts.append(bar.render(is_unicode=True))
    for title, rows in report.tables.items():
        if rows and isinstance(rows[0][1], int | float):
            bar = bar_chart(title=title, width=900, height=300)
            for row in rows:
                bar.add(str(row[0]), row[1])
            charts.append(bar.render(is_unicode=True))
    figures = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_text(v))}</td></tr>"
        for k, v in report.figures.items()
    )
    checks = "".join(
        f"<tr><th>{html.escape(c.name)}</th><td class={'ok' if c.ok else 'fail'}>"
        f"{'PASS' if c.ok else 'FAIL'}</td><td>{html.escape(c.detail)}</td></tr>"
        for c in report.checks
    )
    tables = "".join(
        f"<h2>{html.escape(title)}</h2><table>"
        + "".join(
            "<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>"
            for row in rows
        )
        + "</table>"
        for title, rows in report.tables.items()
    )
    options = html.escape(", ".join(f"{k} {v}" for k, v in report.options.items()))
    wall = html.escape(", ".join(f"{k} {v}" for k, v in report.wall.items()))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Simulated market report</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}
table{{border-collapse:collapse;margin:1em 0}}th,td{{border:1px solid #ccc;padding:.3em .6em;
text-align:left}}.ok{{color:#080}}.fail{{color:#c00;font-weight:bold}}</style></head>
<body><h1>Simulated market report</h1><p>{options}</p><p>{wall}</p>
<h2>Invariants</h2><table>{checks}</table>
<h2>Figures</h2><table>{figures}</table>{tables}
{"".join(f"<figure>{svg}</figure>" for svg in charts)}
</body></html>
"""
