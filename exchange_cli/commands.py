"""The `exchange` command: one sub-command per API operation a buyer uses.

Prices are typed and shown in yuan (¥25.00) and sent in fen, the API's minor
units, so `--max-price 25` is 2500 fen per GPU-hour. `--json` prints the API's
own answer; `--explain` prints every HTTP call (method, URL, body; the token
masked) to stderr before it is made."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

from exchange_cli import __version__
from exchange_cli.client import ApiError, Exchange
from exchange_cli.config import config_path, settings_load, settings_save

HUBS = (
    "jingjinji",
    "yangtze",
    "greater_bay",
    "chengyu",
    "inner_mongolia",
    "guizhou",
    "gansu",
    "ningxia",
    "none",
)


# --- input ---------------------------------------------------------------------------


def fen(text: str) -> int:
    """'25', '25.5', '25.50' yuan -> 2550 fen; more than two decimals is refused."""
    try:
        value = Decimal(text)
    except InvalidOperation as error:
        raise argparse.ArgumentTypeError(f"not an amount in yuan: {text!r}") from error
    minor = value * 100
    if not value.is_finite() or minor != minor.to_integral_value() or minor <= 0:
        raise argparse.ArgumentTypeError(f"a positive amount with at most 2 decimals: {text!r}")
    return int(minor)


def when(text: str) -> str:
    """An ISO 8601 time, or +6h / +2d / +30m from now (local clock, sent as UTC)."""
    if text.startswith("+") and text[-1:] in ("m", "h", "d") and text[1:-1].isdigit():
        unit = {"m": "minutes", "h": "hours", "d": "days"}[text[-1]]
        moment = dt.datetime.now(dt.UTC) + dt.timedelta(**{unit: int(text[1:-1])})
        return moment.replace(microsecond=0).isoformat()
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a time (ISO 8601 or +6h): {text!r}") from error
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.isoformat()


# --- output --------------------------------------------------------------------------


def yuan(amount: int | None, currency: str = "CNY") -> str:
    if amount is None:
        return "-"
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(int(amount)), 100)
    symbol = "¥" if currency == "CNY" else f"{currency} "
    return f"{sign}{symbol}{whole:,}.{cents:02d}"


def per_pflops(value: str | None, currency: str = "CNY") -> str:
    if value is None:
        return "-"
    return yuan(int(Decimal(value).quantize(Decimal(1))), currency)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    if not rows:
        print("(none)", file=out)


# --- sub-commands --------------------------------------------------------------------


def cmd_login(api: Exchange, args, out: TextIO) -> Any:
    password = args.password or getpass.getpass("Password: ")
    answer = api.request(
        "POST", "/auth/token/", body={"username": args.username, "password": password}
    )
    path = config_path(args.config)
    settings_save(path=path, url=api.url, token=answer["token"])
    if not args.json:
        print(f"Signed in; token saved to {path} (expires {answer['expiry']}).", file=out)
    return {"token_prefix": answer["token_prefix"], "expiry": answer["expiry"], "config": str(path)}


def cmd_offers(api: Exchange, args, out: TextIO) -> Any:
    params = {
        "gpu_model": args.gpu_model,
        "vendor": args.vendor,
        "hub": args.hub,
        "region": args.region,
        "max_price": args.max_price,
        "min_gpus": args.min_gpus,
        "min_green_share": args.min_green_share,
        "sort": args.sort,
    }
    if args.domestic:
        params["domestic"] = "true"
    rows = api.pages("/offers/", params=params, limit=args.limit)
    if not args.json:
        table(
            [
                (
                    o["id"],
                    o["gpu_model"],
                    o["provider"],
                    f"{o['site']['name']} ({o['site']['hub']})",
                    f"{o['gpus_available']}/{o['gpus_total']}",
                    yuan(o["price_amount"], o["currency"]),
                    per_pflops(o["price_per_pflops_hour"], o["currency"]),
                    o["site"]["green_share"],
                    "yes" if o["interruptible"] else "",
                )
                for o in rows
            ],
            ["offer", "gpu model", "provider", "site (hub)", "gpus", "¥/gpu-h", "¥/pflops-h"]
            + ["green", "interruptible"],
            out,
        )
    return rows


def cmd_book(api: Exchange, args, out: TextIO) -> Any:
    answer = api.request("GET", "/book/", params={"gpu_model": args.gpu_model, "hub": args.hub})
    if not args.json:
        for book in answer["books"]:
            currency = book["currency"]
            print(f"{book['gpu_model_name']} ({book['gpu_model']}) · {currency}", file=out)
            depth = max(len(book["bids"]), len(book["asks"]))
            rows = []
            for i in range(depth):
                bid = book["bids"][i] if i < len(book["bids"]) else None
                ask = book["asks"][i] if i < len(book["asks"]) else None
                rows.append(
                    (
                        bid["gpus"] if bid else "",
                        yuan(bid["price_amount"], currency) if bid else "",
                        per_pflops(bid["price_per_pflops_hour"], currency) if bid else "",
                        yuan(ask["price_amount"], currency) if ask else "",
                        per_pflops(ask["price_per_pflops_hour"], currency) if ask else "",
                        ask["gpus"] if ask else "",
                    )
                )
            table(
                rows,
                ["bid gpus", "bid ¥/gpu-h", "¥/pflops-h", "ask ¥/gpu-h"]
                + [
                    "¥/pflops-h",
                    "ask gpus",
                ],
                out,
            )
            print(file=out)
        if not answer["books"]:
            print("Nothing stands on the book.", file=out)
    return answer


def _order_body(args) -> dict[str, Any]:
    body: dict[str, Any] = {
        "accepted_models": args.model or [],
        "gpu_count": args.gpus,
        "hours": args.hours,
        "start_by": args.start_by,
        "regions": args.region or [],
        "hubs": args.hub or [],
        "domestic_only": args.domestic_only,
        "gang": args.gang,
    }
    if args.max_price is not None:
        body["max_price_amount"] = args.max_price
    if args.min_tflops is not None:
        body["min_tflops"] = str(args.min_tflops)
    if args.min_memory_gb is not None:
        body["min_memory_gb"] = args.min_memory_gb
    if args.min_green_share is not None:
        body["min_green_share"] = str(args.min_green_share)
    if args.interruptible:
        body["interruptible"] = True
    if args.start_at is not None:
        body["start_at"] = args.start_at
    if getattr(args, "max_refills", None) is not None:
        body["max_refills"] = args.max_refills
    return body


def cmd_quote(api: Exchange, args, out: TextIO) -> Any:
    answer = api.request("POST", "/quotes/", body=_order_body(args))
    if not args.json:
        currency = answer["currency"]
        print(
            f"{answer['gpus']} of {answer['gpus_asked']} GPUs for {answer['hours']} h: "
            f"{yuan(answer['cost_amount'], currency)} at the asks "
            f"({answer['gpu_hours']} GPU-hours, {answer['pflops_hours']} PFLOPS-hours)",
            file=out,
        )
        table(
            [
                (
                    line["offer"],
                    line["gpu_model"],
                    line["provider"],
                    f"{line['site']} ({line['hub']})",
                    line["gpus"],
                    yuan(line["price_amount"], currency),
                    yuan(line["cost_amount"], currency),
                    line["starts_at"],
                )
                for line in answer["lines"]
            ],
            ["offer", "gpu model", "provider", "site (hub)", "gpus", "¥/gpu-h", "cost", "from"],
            out,
        )
        if answer["excluded"]:
            print(f"\nLeft out ({answer['excluded_total']}):", file=out)
            table(
                [
                    (
                        row["offer"],
                        row["gpu_model"],
                        f"{row['site']} ({row['hub']})",
                        yuan(row["price_amount"], currency),
                        ", ".join(row["reasons"]),
                    )
                    for row in answer["excluded"]
                ],
                ["offer", "gpu model", "site (hub)", "¥/gpu-h", "why"],
                out,
            )
    return answer


def _show_order(order: dict[str, Any], out: TextIO) -> None:
    models = ", ".join(order["accepted_models"]) or "any meeting the floors"
    print(
        f"order {order['id']}: {order['status']} · {order['gpus_filled']}/{order['gpu_count']} "
        f"GPUs filled · {order['hours']} h · max {yuan(order['max_price_amount'], order['currency'])}"
        f"/GPU-h · {order['time_in_force']}"
        + (f" till {order['good_till']}" if order.get("good_till") else "")
        + f" · {models}",
        file=out,
    )


def _show_leases(leases: list[dict[str, Any]], out: TextIO) -> None:
    table(
        [
            (
                lease["id"],
                lease["order"],
                lease["gpu_model"],
                f"{lease['site']} ({lease['hub']})",
                lease["gpu_count"],
                yuan(lease["price_amount"], lease["currency"]),
                lease["starts_at"],
                lease["ends_at"],
                lease["status"],
                round(lease["gpu_seconds_delivered"] / 3600, 2),
            )
            for lease in leases
        ],
        ["lease", "order", "gpu model", "site (hub)", "gpus", "¥/gpu-h", "starts", "ends"]
        + ["status", "gpu-h delivered"],
        out,
    )


def cmd_order_place(api: Exchange, args, out: TextIO) -> Any:
    body = _order_body(args)
    body["time_in_force"] = "ioc" if args.ioc else "good_till"
    if args.good_till:
        body["good_till"] = args.good_till
    body["failover_allowed"] = not args.no_failover
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    order = api.request("POST", "/orders/", body=body, headers=headers)
    if not args.json:
        _show_order(order, out)
    return order


def cmd_order_list(api: Exchange, args, out: TextIO) -> Any:
    rows = api.pages("/orders/", limit=args.limit)
    if not args.json:
        for order in rows:
            _show_order(order, out)
        if not rows:
            print("(none)", file=out)
    return rows


def cmd_order_show(api: Exchange, args, out: TextIO) -> Any:
    order = api.request("GET", f"/orders/{args.id}/")
    if not args.json:
        _show_order(order, out)
        _show_leases(order["leases"], out)
    return order


def cmd_order_cancel(api: Exchange, args, out: TextIO) -> Any:
    order = api.request("POST", f"/orders/{args.id}/cancel/")
    if not args.json:
        _show_order(order, out)
    return order


def cmd_leases(api: Exchange, args, out: TextIO) -> Any:
    rows = api.pages("/leases/", limit=args.limit)
    if not args.json:
        _show_leases(rows, out)
    return rows


def cmd_lease_resell(api: Exchange, args, out: TextIO) -> Any:
    if args.cancel:
        offer = api.request("POST", f"/leases/{args.id}/resell/cancel/")
    else:
        body = {"price_amount": args.price}
        offer = api.request("POST", f"/leases/{args.id}/resell/", body=body)
    if not args.json:
        print(
            f"resale offer {offer['id']} ({offer['status']}): {offer['gpus_available']} of "
            f"{offer['gpus_total']} GPUs at {yuan(offer['price_amount'], offer['currency'])}"
            f"/GPU-h, {offer['available_from']} → {offer['available_until']}",
            file=out,
        )
    return offer


def cmd_lease_end(api: Exchange, args, out: TextIO) -> Any:
    lease = api.request("POST", f"/leases/{args.id}/end/", body={"reason": args.reason})
    if not args.json:
        _show_leases([lease], out)
        if lease.get("ended_reason"):
            print(lease["ended_reason"], file=out)
    return lease


def cmd_usage(api: Exchange, args, out: TextIO) -> Any:
    rows = api.pages("/usage-records/", params={"lease": args.lease}, limit=args.limit)
    if not args.json:
        table(
            [
                (
                    r["lease"],
                    r["window_start"],
                    r["window_end"],
                    round(r["gpu_seconds_delivered"] / 3600, 3),
                    round(r["gpu_seconds_lost"] / 3600, 3),
                    r["energy_wh"],
                    r["avg_utilisation"],
                )
                for r in rows
            ],
            ["lease", "from", "to", "gpu-h delivered", "gpu-h lost", "energy Wh", "util"],
            out,
        )
    return rows


def cmd_invoices(api: Exchange, args, out: TextIO) -> Any:
    rows = api.pages("/invoices/", limit=args.limit)
    if not args.json:
        table(
            [
                (
                    i["id"],
                    i["number"] or "(draft)",
                    f"{i['period_start']} → {i['period_end']}",
                    i["status"],
                    yuan(i["gross_amount"], i["currency"]),
                    yuan(i["voucher_amount"], i["currency"]),
                    yuan(i["buyer_amount"], i["currency"]),
                    yuan(i["outstanding_amount"], i["currency"]),
                )
                for i in rows
            ],
            ["invoice", "number", "period", "status", "gross", "vouchers", "you pay"]
            + ["outstanding"],
            out,
        )
    return rows


def cmd_index(api: Exchange, args, out: TextIO) -> Any:
    params = {"gpu_class": args.gpu_class, "since": args.since, "until": args.until}
    answer = api.request("GET", "/price-index/", params=params)
    if not args.json:
        print(f"price index, method {answer['method_version']}", file=out)
        table(
            [
                (
                    row["day"],
                    row["gpu_class"],
                    yuan(round(Decimal(row["vwap_gpu_hour"])), row["currency"]),
                    per_pflops(row["vwap_pflops_hour"], row["currency"]),
                    row["gpu_hours"],
                    row["pflops_hours"],
                    row["trades"],
                )
                for row in answer["rows"]
            ],
            ["day", "class", "vwap ¥/gpu-h", "vwap ¥/pflops-h", "gpu-h", "pflops-h", "trades"],
            out,
        )
    return answer


# --- the parser ----------------------------------------------------------------------


def _order_arguments(parser: argparse.ArgumentParser, *, price_required: bool) -> None:
    parser.add_argument("--gpus", type=int, required=True, help="GPU count")
    parser.add_argument("--hours", type=int, required=True)
    parser.add_argument(
        "--start-by", type=when, default="+6h", help="ISO 8601 or +6h / +2d (default +6h)"
    )
    parser.add_argument(
        "--max-price",
        type=fen,
        required=price_required,
        help="yuan per GPU-hour" + ("" if price_required else " (default: show every ask)"),
    )
    parser.add_argument(
        "--model", action="append", help="an accepted GPU model slug (repeat for several)"
    )
    parser.add_argument("--min-tflops", type=Decimal)
    parser.add_argument("--min-memory-gb", type=int)
    parser.add_argument("--min-green-share", type=Decimal)
    parser.add_argument("--region", action="append", help="an accepted province (repeat)")
    parser.add_argument("--hub", action="append", choices=HUBS, help="an accepted hub (repeat)")
    parser.add_argument("--domestic-only", action="store_true")
    parser.add_argument("--gang", action="store_true", help="all GPUs at one site")
    parser.add_argument(
        "--interruptible",
        action="store_true",
        help="accept interruptible capacity (cheaper; pre-empted by higher bids after a notice)",
    )
    parser.add_argument(
        "--start-at", type=when, help="a forward block: start at this hour (ISO 8601 or +2d)"
    )


def _common(*, top: bool) -> argparse.ArgumentParser:
    """Options taken before or after the sub-command (after it, an option left
    out does not undo the one given before)."""
    common = argparse.ArgumentParser(add_help=False)
    default: Any = None if top else argparse.SUPPRESS
    flag: Any = False if top else argparse.SUPPRESS
    common.add_argument(
        "--url", default=default, help="the exchange (env EXCHANGE_URL; default the config file)"
    )
    common.add_argument(
        "--token", default=default, help="API token (env EXCHANGE_TOKEN; default the config file)"
    )
    common.add_argument("--config", default=default, help="config file (env EXCHANGE_CONFIG)")
    common.add_argument(
        "--json", action="store_true", default=flag, help="print the API's JSON answer"
    )
    common.add_argument(
        "--explain", action="store_true", default=flag, help="print each HTTP call to stderr first"
    )
    return common


def parser_build() -> argparse.ArgumentParser:
    common = _common(top=False)
    parser = argparse.ArgumentParser(
        prog="exchange",
        description="Command-line client of the compute exchange.",
        parents=[_common(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"exchange {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, handler: Callable, help_text: str, parent=commands):
        sub = parent.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    login = command("login", cmd_login, "get an API token and save it in the config file")
    login.add_argument("--username", required=True)
    login.add_argument("--password", help="default: asked for (not echoed)")

    offers = command("offers", cmd_offers, "search live offers")
    offers.add_argument("--gpu-model")
    offers.add_argument("--vendor")
    offers.add_argument("--hub", choices=HUBS)
    offers.add_argument("--region")
    offers.add_argument("--domestic", action="store_true")
    offers.add_argument("--max-price", type=fen, help="yuan per GPU-hour")
    offers.add_argument("--min-gpus", type=int)
    offers.add_argument("--min-green-share", type=Decimal)
    offers.add_argument(
        "--sort", choices=["price", "-price", "price_per_pflops", "green", "reliability"]
    )
    offers.add_argument("--limit", type=int, default=50)

    book = command("book", cmd_book, "the public book: bids and asks by price level")
    book.add_argument("--gpu-model")
    book.add_argument("--hub", choices=HUBS)

    quote = command("quote", cmd_quote, "what an order would get now, and what is left out")
    _order_arguments(quote, price_required=False)

    order = command("order", None, "place, list, show or cancel orders")
    actions = order.add_subparsers(dest="action", required=True, metavar="action")
    place = command("place", cmd_order_place, "place an order", parent=actions)
    _order_arguments(place, price_required=True)
    place.add_argument(
        "--ioc", action="store_true", help="immediate or cancel (default: good till)"
    )
    place.add_argument("--good-till", type=when, help="leave the book then (default: start-by)")
    place.add_argument("--no-failover", action="store_true")
    place.add_argument(
        "--max-refills",
        type=int,
        help="re-arm at most this often after pre-emption or node failure (default: no limit)",
    )
    place.add_argument("--idempotency-key", help="repeat safely: the same key places once")
    listing = command("list", cmd_order_list, "your orders", parent=actions)
    listing.add_argument("--limit", type=int, default=50)
    show = command("show", cmd_order_show, "one order and its leases", parent=actions)
    show.add_argument("id", type=int)
    cancel = command("cancel", cmd_order_cancel, "cancel an order", parent=actions)
    cancel.add_argument("id", type=int)

    leases = command("leases", cmd_leases, "your leases, with usage so far")
    leases.add_argument("--limit", type=int, default=50)
    lease = command("lease", None, "act on one lease")
    lease_actions = lease.add_subparsers(dest="action", required=True, metavar="action")
    end = command(
        "end",
        cmd_lease_end,
        "end a running lease now: billed to this second, its GPUs go back on offer",
        parent=lease_actions,
    )
    end.add_argument("id", type=int)
    end.add_argument("--reason", default="", help="shown to the provider (at most 150 characters)")
    resell = command(
        "resell",
        cmd_lease_resell,
        "put the rest of a lease up for resale at your ask (or --cancel the resale)",
        parent=lease_actions,
    )
    resell.add_argument("id", type=int)
    group = resell.add_mutually_exclusive_group(required=True)
    group.add_argument("--price", type=fen, help="your ask, yuan per GPU-hour")
    group.add_argument("--cancel", action="store_true", help="take the unsold rest off the book")
    usage = command("usage", cmd_usage, "metered usage records")
    usage.add_argument("--lease", type=int)
    usage.add_argument("--limit", type=int, default=100)
    invoices = command("invoices", cmd_invoices, "your invoices")
    invoices.add_argument("--limit", type=int, default=50)
    index = command("index", cmd_index, "the daily price index from matched trades")
    index.add_argument("--gpu-class", help="e.g. imported-t1-m1 (default: every class)")
    index.add_argument("--since", help="YYYY-MM-DD (default: 30 days before --until)")
    index.add_argument("--until", help="YYYY-MM-DD (default: the last published day)")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, transport=None) -> int:
    out = out or sys.stdout
    args = parser_build().parse_args(argv)
    settings = settings_load(url=args.url, token=args.token, path=config_path(args.config))
    api = Exchange(
        url=settings.url,
        token=None if args.command == "login" else settings.token,
        explain=args.explain,
        transport=transport,
    )
    try:
        answer = args.handler(api, args, out)
    except ApiError as error:
        print(f"exchange: {error}", file=sys.stderr)
        return 1
    finally:
        api.close()
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2), file=out)
    return 0
