"""Forward blocks and their resale on the book."""

import datetime as dt
import threading

import pytest
import time_machine
from django.db import connection, connections
from rest_framework.test import APIClient

from billing.invoices import invoice_draft_refresh
from billing.ledger import ledger_is_balanced
from billing.models import Invoice, InvoiceLine, LedgerAccount
from billing.settlement import invoice_issue
from market.leases import leases_advance
from market.matching import engine as matching
from market.matching import order_match
from market.models import Lease, Offer, Order
from market.orders import order_cancel
from market.telemetry.metering import leases_meter
from tests.factories import NodeFactory, OfferFactory, OrderFactory, gpu, member_of
from tests.market.telemetry.test_metering import record_ticks

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
H800 = "nvidia-h800-sxm"
HOUR = dt.timedelta(hours=1)


def _client(organisation) -> APIClient:
    client = APIClient()
    client.force_authenticate(member_of(organisation))
    return client


def _forward_block(*, price=2_000) -> tuple[Offer, Order, Lease]:
    """8 H800s bought at ¥20.00 for 11:00-15:00, placed at 09:00 through the API."""
    offer = OfferFactory(node=NodeFactory(gpu_count=8), price_amount=price)
    seller = OrderFactory(accepted_models=[gpu(H800)]).buyer
    response = _client(seller).post(
        "/api/v1/orders/",
        {
            "accepted_models": [H800],
            "gpu_count": 8,
            "hours": 4,
            "max_price_amount": 2_500,
            "start_at": (T0 + 2 * HOUR).isoformat(),
            "start_by": (T0 + 3 * HOUR).isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["id"])
    order_match(order_id=order.pk)  # if the placement's own task has not matched it yet
    return offer, order, Lease.objects.get(order=order)


@pytest.mark.django_db
@time_machine.travel(T0, tick=False)
def test_a_forward_block_starts_at_its_hour_and_must_start_on_the_hour():
    offer, order, lease = _forward_block()

    assert (lease.starts_at, lease.ends_at, lease.status) == (
        T0 + 2 * HOUR,
        T0 + 6 * HOUR,
        "pending",
    )
    response = _client(order.buyer).post(
        "/api/v1/orders/",
        {
            "accepted_models": [H800],
            "gpu_count": 1,
            "hours": 1,
            "max_price_amount": 2_500,
            "start_at": (T0 + 2 * HOUR + dt.timedelta(minutes=30)).isoformat(),
            "start_by": (T0 + 3 * HOUR).isoformat(),
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"start_at": ["A forward block starts on the hour."]}


@pytest.mark.django_db
@time_machine.travel(T0, tick=False)
def test_a_resold_block_bills_the_new_holder_and_credits_the_seller_the_fill_less_the_fee():
    # given: a seller holds 8 GPUs for 11:00-15:00 at ¥20.00 and resells the block at ¥22.00
    offer, seller_order, block = _forward_block()
    seller = _client(seller_order.buyer)
    response = seller.post(f"/api/v1/leases/{block.pk}/resell/", {"price_amount": 2_200})
    assert response.status_code == 201, response.content
    resale = Offer.objects.get(pk=response.json()["id"])
    assert (resale.provider, resale.gpus_available, resale.max_hours, resale.available_from) == (
        seller_order.buyer,
        8,
        4,
        T0 + 2 * HOUR,
    )
    # the seller's own orders never take its resale
    own = OrderFactory(buyer=seller_order.buyer, accepted_models=[gpu(H800)], gpu_count=8, hours=4)
    assert order_match(order_id=own.pk) == []

    # when: a buyer bidding ¥23.00 for 8 GPUs over 4 hours is matched
    holder_order = OrderFactory(
        accepted_models=[gpu(H800)], gpu_count=8, hours=4, max_price_amount=2_300
    )
    (bought,) = order_match(order_id=holder_order.pk)

    # then: the holder leases the block's GPUs at the seller's ask, from the seller
    assert (bought.node_id, bought.gpu_count, bought.price_amount) == (block.node_id, 8, 2_200)
    assert (bought.starts_at, bought.ends_at) == (T0 + 2 * HOUR, T0 + 6 * HOUR)
    assert (bought.provider, bought.resold_from) == (seller_order.buyer, block)
    seen = _client(holder_order.buyer).get(f"/api/v1/leases/{bought.pk}/").json()
    assert seen["resold_from"] == block.pk
    # the seller's block cannot be ended early now: it is the holder's
    assert seller.post(f"/api/v1/leases/{block.pk}/end/").status_code == 409

    # when: the block runs 11:00-15:00, is metered, and both buyers' invoices are issued
    record_ticks(block.node, start=T0 + 2 * HOUR - dt.timedelta(minutes=1), end=T0 + 7 * HOUR)
    for hour in (2, 6):
        with time_machine.travel(T0 + hour * HOUR, tick=False):
            leases_advance()
    with time_machine.travel(T0 + 7 * HOUR, tick=False):
        leases_meter(now=T0 + 7 * HOUR)
        for buyer in (holder_order.buyer, seller_order.buyer):
            invoice_issue(invoice=Invoice.objects.get(pk=invoice_draft_refresh(buyer=buyer)))

    # then: the holder is billed 32 GPU-hours × ¥22.00 = ¥704.00; the seller is
    # credited ¥704.00 - 5 % = ¥668.80; the seller still owes its block,
    # 32 × ¥20.00 = ¥640.00, of which its provider is credited ¥608.00
    line = InvoiceLine.objects.get(lease=bought)
    assert (line.gpu_seconds, line.amount, line.fee_amount, line.provider_net_amount) == (
        8 * 4 * 3600,
        70_400,
        3_520,
        66_880,
    )
    assert Invoice.objects.get(buyer=holder_order.buyer).total_amount == 70_400
    own_line = InvoiceLine.objects.get(lease=block)
    assert (own_line.amount, own_line.provider_net_amount) == (64_000, 60_800)

    def payable(organisation) -> int:
        return LedgerAccount.objects.get(
            purpose="provider_payable", organisation=organisation
        ).balance

    assert payable(seller_order.buyer) == -66_880
    assert payable(offer.provider) == -60_800
    assert ledger_is_balanced()


@pytest.mark.django_db
@time_machine.travel(T0, tick=False)
def test_a_cancelled_resale_leaves_the_book_and_the_block_can_end_again():
    offer, seller_order, block = _forward_block()
    seller = _client(seller_order.buyer)
    seller.post(f"/api/v1/leases/{block.pk}/resell/", {"price_amount": 2_200})
    # a second resale of the same block is refused
    assert (
        seller.post(f"/api/v1/leases/{block.pk}/resell/", {"price_amount": 2_100}).status_code
        == 409
    )

    response = seller.post(f"/api/v1/leases/{block.pk}/resell/cancel/")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["gpus_available"]) == ("withdrawn", 0)
    holder_order = OrderFactory(accepted_models=[gpu(H800)], gpu_count=8, hours=4)
    assert order_match(order_id=holder_order.pk) == []
    assert seller.post(f"/api/v1/leases/{block.pk}/end/").json()["status"] == "cancelled"


@pytest.mark.django_db
@time_machine.travel(T0, tick=False)
def test_only_the_buyer_of_a_lease_resells_it():
    offer, seller_order, block = _forward_block()
    assert (
        _client(offer.provider)
        .post(f"/api/v1/leases/{block.pk}/resell/", {"price_amount": 2_200})
        .status_code
        == 403
    )
    stranger = OrderFactory().buyer
    assert (
        _client(stranger)
        .post(f"/api/v1/leases/{block.pk}/resell/", {"price_amount": 2_200})
        .status_code
        == 404
    )
    assert not Offer.objects.filter(resale_of=block).exists()


def _race(targets):
    errors = []

    def wrap(target):
        try:
            target()
        except Exception as exc:  # noqa: BLE001 - checked in the test thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cancel_first", [True, False])
def test_a_resale_racing_its_sellers_cancel_is_sold_or_cancelled_never_both(
    monkeypatch, seeded_catalogue, cancel_first
):
    # given: a block up for resale, and a buyer whose match has planned on it
    from market.resale import lease_resell

    with time_machine.travel(T0, tick=False):
        offer, seller_order, block = _forward_block()
        lease_resell(lease=block, price_amount=2_200, actor=None)
        holder_order = OrderFactory(accepted_models=[gpu(H800)], gpu_count=8, hours=4)
    planned, committed, go = threading.Event(), threading.Event(), threading.Event()
    real_commit = matching.round_commit

    def commit_in_turn(fills, **kwargs):
        # the buyer has planned from the book with the resale on it; it commits
        # after the cancel (cancel_first) or before it
        planned.set()
        if cancel_first:
            go.wait(timeout=60)
        try:
            return real_commit(fills, **kwargs)
        finally:
            committed.set()

    monkeypatch.setattr(matching, "round_commit", commit_in_turn)

    def buy():
        with time_machine.travel(T0 + dt.timedelta(minutes=1), tick=False):
            order_match(order_id=holder_order.pk)

    def cancel():
        planned.wait(timeout=60)
        if not cancel_first:
            committed.wait(timeout=60)
        with time_machine.travel(T0 + dt.timedelta(minutes=1), tick=False):
            try:
                order_cancel(order=seller_order, actor=None, end_running_leases=True)
            finally:
                go.set()

    # when the seller cancels its order (and so its block) while the buyer's fill commits
    errors = _race([buy, cancel])

    # then either the cancel came first (block cancelled, nothing sold) or the
    # fill did (the cancel is refused: the block runs on for its new holder)
    connections.close_all()
    block.refresh_from_db()
    seller_order.refresh_from_db()
    sold = Lease.objects.filter(resold_from=block)
    resale = Offer.objects.get(resale_of=block)
    if cancel_first:
        assert errors == []
        assert (block.status, seller_order.status) == ("cancelled", "cancelled")
        assert not sold.exists()
        assert (resale.status, resale.gpus_available) == ("withdrawn", 0)
    else:
        assert [str(e) for e in errors] == [
            f"GPUs of lease {block.pk} are resold to another buyer; it runs to its end."
        ]
        assert (block.status, seller_order.status) == ("pending", "filled")
        assert sold.get().gpu_count == 8
        assert (resale.status, resale.gpus_available) == ("active", 0)


@pytest.mark.django_db
@time_machine.travel(T0, tick=False)
def test_a_resold_block_is_subsidised_once_for_the_buyer_who_used_it():
    """Seller and holder both hold vouchers of a 30 % programme listing the
    computing centre: the holder's resale line is subsidised (its supplier is
    the listed centre, not the reselling buyer), the seller's block line is not
    for the GPU-hours it resold, and says why."""
    from billing.models import SubsidyRefusal
    from tests.billing.subsidy.factories import programme, spread_organisation, voucher

    offer, seller_order, block = _forward_block()
    authority = spread_organisation("authority")
    prog = programme(authority, rate_bp=3_000, eligible_providers=[offer.provider])
    holder_order = OrderFactory(
        accepted_models=[gpu(H800)], gpu_count=4, hours=4, max_price_amount=2_300
    )
    for buyer in (seller_order.buyer, holder_order.buyer):
        voucher(prog, buyer, 1_000_000)
    _client(seller_order.buyer).post(f"/api/v1/leases/{block.pk}/resell/", {"price_amount": 2_200})
    (bought,) = order_match(order_id=holder_order.pk)  # 4 of the block's 8 GPUs
    assert (bought.gpu_count, bought.provider) == (4, seller_order.buyer)

    record_ticks(block.node, start=T0 + 2 * HOUR - dt.timedelta(minutes=1), end=T0 + 7 * HOUR)
    for hour in (2, 6):
        with time_machine.travel(T0 + hour * HOUR, tick=False):
            leases_advance()
    with time_machine.travel(T0 + 7 * HOUR, tick=False):
        leases_meter(now=T0 + 7 * HOUR)
        for buyer in (holder_order.buyer, seller_order.buyer):
            invoice_issue(invoice=Invoice.objects.get(pk=invoice_draft_refresh(buyer=buyer)))

    # the holder: 16 GPU-hours × ¥22.00 = ¥352.00, 30 % = ¥105.60
    used = InvoiceLine.objects.get(lease=bought)
    assert (used.amount, used.voucher_amount) == (35_200, 10_560)
    # the seller: 32 GPU-hours × ¥20.00 = ¥640.00 billed, subsidised only for
    # the 16 it kept: 30 % of ¥320.00 = ¥96.00; the other ¥96.00 refused
    kept = InvoiceLine.objects.get(lease=block)
    assert (kept.amount, kept.voucher_amount) == (64_000, 9_600)
    refusal = SubsidyRefusal.objects.get(invoice_line=kept)
    assert (refusal.reason, refusal.amount) == ("not_eligible", 9_600)
    assert refusal.detail.startswith("16.0000 GPU-hours resold")
    assert ledger_is_balanced()
