"""The `exchange` command against a live exchange (gunicorn on PostgreSQL): log
in, quote, place good-till and immediate-or-cancel orders, cancel, and read
leases, usage, invoices, offers and the book - over real HTTP."""

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Organisation
from exchange_cli.commands import main
from market.models import Lease, Order
from tests.factories import NodeFactory, OfferFactory, OrganisationFactory, member_of
from tests.support import free_port, wait_for_http

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(settings.BASE_DIR)
PASSWORD = "correct-horse-battery"


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def live_url(tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": "", "DEBUG": "false"}
    with open(tmp_path / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application"]
            + ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run(*argv: str) -> str:
    out = io.StringIO()
    assert main(list(argv), out=out) == 0, out.getvalue()
    return out.getvalue()


def test_the_cli_trades_against_a_live_exchange(live_url, tmp_path, capsys):
    # given a verified buyer and two H800 offers (2 GPUs at ¥20.00, 8 at ¥24.00)
    buyer = OrganisationFactory(kind=Organisation.Kind.BUYER)
    member_of(buyer, "cli-buyer")
    cheap = OfferFactory(node=NodeFactory(gpu_count=2), price_amount=2_000)
    dear = OfferFactory(price_amount=2_400)
    config = tmp_path / "exchange.json"
    common = ["--url", live_url, "--config", str(config)]

    # when the buyer logs in, the token lands in a file only they can read
    run("login", "--username", "cli-buyer", "--password", PASSWORD, *common)
    assert json.loads(config.read_text())["url"] == live_url
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    common = ["--config", str(config)]  # the URL and the token now come from the file

    # a quote: 4 GPUs x 3 h = 2 x ¥20.00 x 3 + 2 x ¥24.00 x 3 = ¥264.00; nothing placed
    quote = json.loads(
        run("quote", "--gpus", "4", "--hours", "3", "--model", "nvidia-h800-sxm", "--json", *common)
    )
    assert quote["cost_amount"] == 26_400
    assert [(line["offer"], line["gpus"]) for line in quote["lines"]] == [
        (cheap.pk, 2),
        (dear.pk, 2),
    ]
    text = run("quote", "--gpus", "4", "--hours", "3", "--max-price", "21", *common)
    assert "2 of 4 GPUs for 3 h: ¥120.00 at the asks" in text
    assert "price" in text.split("Left out")[1]
    assert not Order.objects.exists()

    # an immediate-or-cancel order for 12 takes the 10 there are and releases 2
    ioc = json.loads(
        run(
            *("order", "place", "--gpus", "12", "--hours", "2", "--max-price", "25"),
            *("--ioc", "--json", "--explain", *common),
        )
    )
    assert (ioc["status"], ioc["gpus_filled"]) == ("expired", 10)
    explained = capsys.readouterr().err
    assert f"> POST {live_url}/api/v1/orders/" in explained
    assert "> Token ****" in explained.replace("Authorization: ", "")
    assert '"time_in_force": "ioc"' in explained and "< 201 Created" in explained
    token = json.loads(config.read_text())["token"]
    assert token not in explained

    # a good-till order stands on the book (nothing left to match) until cancelled
    standing = json.loads(
        run(
            *("order", "place", "--gpus", "2", "--hours", "1", "--max-price", "30"),
            "--json",
            *common,
        )
    )
    assert (standing["status"], standing["time_in_force"]) == ("open", "good_till")
    book = json.loads(run("book", "--gpu-model", "nvidia-h800-sxm", "--json", *common))
    assert [(lv["price_amount"], lv["gpus"]) for lv in book["books"][0]["bids"]] == [(3_000, 2)]
    assert "cancelled" in run("order", "cancel", str(standing["id"]), *common)
    assert Order.objects.get(pk=standing["id"]).status == Order.Status.CANCELLED

    # the leases name model, site and price; usage, invoices and offers read back
    leases = run("leases", *common)
    assert leases.count("nvidia-h800-sxm") == 2 and "¥20.00" in leases and "¥24.00" in leases
    assert Lease.objects.filter(order_id=ioc["id"]).count() == 2
    assert "(none)" in run("usage", *common)
    assert json.loads(run("invoices", "--json", *common)) == []
    assert "(none)" in run("offers", "--gpu-model", "nvidia-h800-sxm", *common)

    # the buyer ends the 2-GPU lease now (a lease not yet started is cancelled, a
    # running one completes at this second); the 8-GPU lease is left as it was
    ended = Lease.objects.get(order_id=ioc["id"], gpu_count=2)
    other = Lease.objects.get(order_id=ioc["id"], gpu_count=8)
    expected = (
        Lease.Status.CANCELLED if ended.status == Lease.Status.PENDING else Lease.Status.COMPLETED
    )
    text = run("lease", "end", str(ended.pk), "--reason", "job finished early", *common)
    ended.refresh_from_db()
    assert ended.status == expected and ended.ended_at is not None
    assert f" {expected.value} " in text and "ended early by the buyer: job finished early" in text
    assert Lease.objects.get(pk=other.pk).status == other.status
    # ending it again is the exchange's 409, and a non-zero exit
    assert main(["lease", "end", str(ended.pk), *common], out=io.StringIO()) == 1
    assert "HTTP 409" in capsys.readouterr().err

    # the buyer puts the rest of the 8-GPU lease up for resale at ¥26.00, then takes it back
    text = run("lease", "resell", str(other.pk), "--price", "26", *common)
    assert "resale offer" in text and "8 of 8 GPUs at ¥26.00/GPU-h" in text
    assert "(withdrawn)" in run("lease", "resell", str(other.pk), "--cancel", *common)

    # an error is the exchange's own message and a non-zero exit
    out = io.StringIO()
    assert main(["order", "cancel", str(standing["id"]), *common], out=out) == 1
    assert "cannot be cancelled" in capsys.readouterr().err


def test_the_installed_command_runs_as_a_program(live_url):
    OfferFactory(price_amount=2_000)
    done = subprocess.run(
        [sys.executable, "-m", "exchange_cli", "--url", live_url, "offers", "--explain"],
        capture_output=True,
        text=True,
        env={**os.environ, "EXCHANGE_CONFIG": "/nonexistent/exchange.json"},
        check=True,
        timeout=60,
    )
    assert "nvidia-h800-sxm" in done.stdout and "¥20.00" in done.stdout
    assert f"> GET {live_url}/api/v1/offers/?page=1" in done.stderr
