"""Prepaid balance and credit (issue 14 part 5): top-ups credited once, usage
drawing available down, invoices paid from the balance first, and a balance
that hits zero and stops as configured — amounts to the fen, ledger balanced.
The money paths run on PostgreSQL too (DATABASE_URL)."""

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Organisation
from billing import prepaid
from billing.ledger import account_get, ledger_is_balanced
from billing.models import (
    FundingAlert,
    FundingTerms,
    Invoice,
    LedgerAccount,
    LedgerTransaction,
    TopUp,
)
from billing.prepaid import funding_sweep
from market.models import Lease, LeaseEvent, Order
from tests.billing.conftest import open_invoice, stripe_event_deliver
from tests.factories import (
    LeaseFactory,
    OfferFactory,
    OrderFactory,
    OrganisationFactory,
    UsageRecordFactory,
    gpu,
    member_of,
)

pytestmark = pytest.mark.django_db

P = LedgerAccount.Purpose
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
H800 = "nvidia-h800-sxm"


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _staff() -> APIClient:
    from django.contrib.auth.models import User

    staff, _created = User.objects.get_or_create(username="operator", defaults={"is_staff": True})
    return _client(staff)


def _credit(buyer: Organisation, amount: int) -> None:
    response = _staff().put(
        f"/api/v1/buyers/{buyer.pk}/credit-limit/", {"credit_limit_amount": amount}, format="json"
    )
    assert response.status_code == 200, response.json()


def _top_up_succeeded(buyer: Organisation, amount: int, *, intent_id: str) -> TopUp:
    """A top-up whose PaymentIntent Stripe says succeeded, applied as the
    webhook's processing applies it (the Stripe round trip is tested below)."""
    prepaid.funding_terms_ensure(buyer=buyer)
    top_up = TopUp.objects.create(
        buyer=buyer,
        amount=amount,
        idempotency_key=f"top-up-test-{intent_id}",
        stripe_payment_intent_id=intent_id,
        status="processing",
    )
    intent = {
        "id": intent_id,
        "amount": amount,
        "currency": "cny",
        "status": "succeeded",
        "metadata": {"top_up": str(top_up.pk)},
    }
    prepaid.top_up_intent_event(intent=intent, status="succeeded")
    return top_up


def _usage(buyer: Organisation, *, gpu_seconds: int, price_amount: int = 2_000, **lease_kwargs):
    lease = LeaseFactory(
        order=OrderFactory(buyer=buyer), price_amount=price_amount, gpu_count=1, **lease_kwargs
    )
    UsageRecordFactory(lease=lease, gpu_seconds_delivered=gpu_seconds)
    return lease


def _balance(buyer: Organisation) -> int:
    return account_get(purpose=P.BUYER_CREDIT, organisation=buyer).normal_balance


# --- top-ups --------------------------------------------------------------------------


@pytest.mark.integration
def test_a_card_top_up_is_credited_once_when_its_webhook_comes_twice(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    # when the buyer tops up ¥500.00 with the test card
    response = buyer_client.post(
        "/api/v1/balance/top-ups/",
        {"amount": 50_000, "payment_method": "pm_card_visa"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    top_up = response.json()
    assert (top_up["amount"], top_up["status"], top_up["credited"]) == (50_000, "succeeded", False)
    # nothing is credited before Stripe's event
    assert buyer_client.get("/api/v1/balance/").json()["balance_amount"] == 0

    # when localstripe's signed payment_intent.succeeded is delivered twice
    body, headers = localstripe.relay.wait_for(
        "payment_intent.succeeded", object_id=top_up["payment_intent"]
    )
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            answer = Client().post(
                "/api/v1/stripe/webhook/",
                data=body,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=headers["Stripe-Signature"],
            )
        assert answer.status_code == 200

    # then the balance is ¥500.00, credited once, and the ledger balances
    funding = buyer_client.get("/api/v1/balance/").json()
    assert (funding["balance_amount"], funding["available_amount"]) == (50_000, 50_000)
    # a top-up alone holds nobody to a limit: the balance pays invoices first
    assert funding["prepaid"] is False
    assert LedgerTransaction.objects.filter(kind="top_up").count() == 1
    assert account_get(purpose=P.STRIPE_CLEARING).normal_balance == 50_000
    assert TopUp.objects.get().credited_at is not None
    assert ledger_is_balanced()


def test_the_same_idempotency_key_with_another_amount_is_a_409_and_charges_nothing(
    buyer_org, buyer_client, monkeypatch
):
    calls = []
    monkeypatch.setattr(prepaid.gateway, "payment_intent_create", lambda **kw: calls.append(kw))
    TopUp.objects.create(
        buyer=buyer_org, amount=10_000, idempotency_key=f"top-up-{buyer_org.pk}-k1"
    )

    response = buyer_client.post(
        "/api/v1/balance/top-ups/", {"amount": 20_000}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )

    assert response.status_code == 409, response.json()
    assert "idempotency_key" in response.json()["errors"]
    assert calls == [] and TopUp.objects.count() == 1


# --- available = balance + credit − outstanding − unbilled ----------------------------


def test_metered_usage_draws_available_down_to_the_fen(buyer_org, buyer_client):
    # given ¥100.00 of credit and ¥50.00 prepaid
    _credit(buyer_org, 10_000)
    _top_up_succeeded(buyer_org, 5_000, intent_id="pi_draw")

    # when 1,801 GPU-seconds at ¥18.00/GPU-hour are metered (¥9.005 → ¥9.00,
    # half-even) and 3,601 on another lease at ¥13.33 (¥13.3337 → ¥13.33)
    _usage(buyer_org, gpu_seconds=1_801, price_amount=1_800)
    _usage(buyer_org, gpu_seconds=3_601, price_amount=1_333)

    # then
    funding = buyer_client.get("/api/v1/balance/").json()
    assert funding["unbilled_amount"] == 900 + 1_333
    assert funding["available_amount"] == 5_000 + 10_000 - 2_233 == 12_767
    assert (funding["balance_amount"], funding["credit_limit_amount"]) == (5_000, 10_000)


def test_usage_on_an_issued_invoice_counts_as_owed_not_as_unbilled(buyer_org, buyer_client):
    _credit(buyer_org, 30_000)
    invoice = open_invoice(buyer=buyer_org)  # ¥200.00, nothing prepaid: all for the card

    funding = buyer_client.get("/api/v1/balance/").json()

    assert (invoice.prepaid_amount, invoice.outstanding_amount) == (0, 20_000)
    assert (funding["unbilled_amount"], funding["outstanding_amount"]) == (0, 20_000)
    assert funding["available_amount"] == 10_000


# --- invoices paid from the balance first ----------------------------------------------


def test_an_invoice_is_paid_from_the_balance_first_and_leaves_the_rest_to_the_card(buyer_org):
    # given ¥150.00 prepaid
    _top_up_succeeded(buyer_org, 15_000, intent_id="pi_first")

    # when the ¥200.00 May invoice is issued
    invoice = open_invoice(buyer=buyer_org)

    # then the balance pays ¥150.00 and ¥50.00 is left for the card
    invoice.refresh_from_db()
    assert (invoice.status, invoice.buyer_amount) == (Invoice.Status.OPEN, 20_000)
    assert (invoice.prepaid_amount, invoice.paid_amount, invoice.outstanding_amount) == (
        15_000,
        15_000,
        5_000,
    )
    assert _balance(buyer_org) == 0
    receivable = account_get(purpose=P.BUYER_RECEIVABLE, organisation=buyer_org)
    assert receivable.normal_balance == 5_000
    assert LedgerTransaction.objects.get(business_key=f"invoice:{invoice.pk}:prepaid")
    assert ledger_is_balanced()


def test_a_balance_that_covers_the_invoice_pays_it_at_issue(buyer_org):
    _top_up_succeeded(buyer_org, 25_000, intent_id="pi_all")

    invoice = open_invoice(buyer=buyer_org)

    invoice.refresh_from_db()
    assert (invoice.status, invoice.prepaid_amount, invoice.outstanding_amount) == (
        Invoice.Status.PAID,
        20_000,
        0,
    )
    assert _balance(buyer_org) == 5_000
    assert account_get(purpose=P.BUYER_RECEIVABLE, organisation=buyer_org).normal_balance == 0
    assert ledger_is_balanced()


@pytest.mark.integration
def test_the_card_pays_only_the_remainder_and_the_money_is_counted_once(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    _top_up_succeeded(buyer_org, 15_000, intent_id="pi_part")
    invoice = open_invoice(buyer=buyer_org)

    paid = buyer_client.post(
        f"/api/v1/invoices/{invoice.pk}/pay/", {"payment_method": "pm_card_visa"}, format="json"
    ).json()
    stripe_event_deliver(
        localstripe, django_capture_on_commit_callbacks, object_id=paid["payment_intent"]
    )

    invoice.refresh_from_db()
    assert paid["amount"] == 5_000
    assert (invoice.status, invoice.paid_amount, invoice.prepaid_amount) == ("paid", 20_000, 15_000)
    assert invoice.card_amount == 5_000
    # clearing holds the test top-up (¥150.00) and the card's ¥50.00: ¥200.00, once
    assert account_get(purpose=P.STRIPE_CLEARING).normal_balance == 20_000
    assert account_get(purpose=P.BUYER_RECEIVABLE, organisation=buyer_org).normal_balance == 0
    assert ledger_is_balanced()


# --- at zero ---------------------------------------------------------------------------


def _order_body() -> dict:
    return {
        "accepted_models": [H800],
        "gpu_count": 1,
        "hours": 2,
        "max_price_amount": 3_000,
        "start_by": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=6)).isoformat(),
    }


def test_at_zero_under_stop_orders_a_new_order_is_refused_with_the_reason_and_nothing_stored(
    buyer_org, buyer_client
):
    # given ¥10.00 of credit, stop_orders, and ¥10.00 metered (1,800 s at ¥20.00)
    OfferFactory()
    _credit(buyer_org, 1_000)
    _usage(buyer_org, gpu_seconds=1_800)
    orders_before = Order.objects.count()
    assert buyer_client.get("/api/v1/balance/").json()["at_zero"] == "stop_orders"

    # when the buyer places an order
    response = buyer_client.post("/api/v1/orders/", _order_body(), format="json")

    # then a 409 names the funds, and nothing is stored
    assert response.status_code == 409, response.json()
    reason = response.json()["errors"]["funding"][0]
    assert "¥0.00" in reason and "¥10.00" in reason
    assert Order.objects.count() == orders_before


def test_with_funds_left_the_same_order_is_placed(buyer_org, buyer_client):
    OfferFactory()
    _credit(buyer_org, 1_001)
    _usage(buyer_org, gpu_seconds=1_800)  # ¥10.00 used, ¥0.01 left

    response = buyer_client.post("/api/v1/orders/", _order_body(), format="json")

    assert response.status_code == 201, response.json()


def test_a_buyer_without_terms_pays_after_use_and_is_never_stopped(buyer_org, buyer_client):
    OfferFactory()
    _usage(buyer_org, gpu_seconds=36_000)

    funding = buyer_client.get("/api/v1/balance/").json()
    response = buyer_client.post("/api/v1/orders/", _order_body(), format="json")

    assert (funding["prepaid"], funding["available_amount"]) == (False, -20_000)
    assert "no spending limit" in funding["at_zero_explained"]
    assert response.status_code == 201, response.json()
    assert not FundingTerms.objects.exists()


def _stop_leases_world(buyer_org, buyer_client, *, grace_minutes=30) -> Lease:
    """¥10.00 of credit under stop_leases; a running lease has used ¥10.00."""
    _credit(buyer_org, 1_000)
    response = buyer_client.put(
        "/api/v1/balance/",
        {"at_zero": "stop_leases", "grace_minutes": grace_minutes},
        format="json",
    )
    assert response.status_code == 200, response.json()
    offer = OfferFactory()
    offer.gpus_available -= 1  # the lease holds one of its GPUs
    offer.save()
    lease = _usage(
        buyer_org,
        gpu_seconds=1_800,
        offer=offer,
        starts_at=T0 - dt.timedelta(hours=1),
        ends_at=T0 + dt.timedelta(hours=5),
    )
    return lease


def test_at_zero_under_stop_leases_the_running_lease_ends_after_the_grace_and_not_before(
    buyer_org, buyer_client
):
    with time_machine.travel(T0, tick=False):
        lease = _stop_leases_world(buyer_org, buyer_client)
        standing = OrderFactory(buyer=buyer_org, accepted_models=[gpu(H800)])
        # the beat notes when available first reached zero
        funding_sweep()
        funding = buyer_client.get("/api/v1/balance/").json()
        assert funding["available_amount"] == 0
        assert funding["exhausted_at"] == "2026-03-02T17:00:00+08:00"  # 09:00 UTC
        assert funding["leases_stop_at"] == "2026-03-02T17:30:00+08:00"
        assert "30 minutes later" in funding["at_zero_explained"]

    # 29 minutes in: the lease runs on
    with time_machine.travel(T0 + dt.timedelta(minutes=29, seconds=59), tick=False):
        funding_sweep()
    lease.refresh_from_db()
    assert lease.status == Lease.Status.ACTIVE

    # at 30 minutes: it ends, to the second, with the reason stated; the order leaves the book
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        funding_sweep()
    lease.refresh_from_db()
    assert lease.status == Lease.Status.COMPLETED
    assert lease.ended_at == T0 + dt.timedelta(minutes=30)
    event = LeaseEvent.objects.filter(lease=lease).latest("pk")
    assert event.reason == (
        "ended early by the exchange: available funds reached zero and the 30-minute grace passed"
    )
    standing.refresh_from_db()
    assert standing.status == Order.Status.EXPIRED
    assert FundingTerms.objects.get(buyer=buyer_org).leases_stopped_at == T0 + dt.timedelta(
        minutes=30
    )


def test_a_top_up_within_the_grace_keeps_the_lease_running(buyer_org, buyer_client):
    with time_machine.travel(T0, tick=False):
        lease = _stop_leases_world(buyer_org, buyer_client)
        funding_sweep()
    with time_machine.travel(T0 + dt.timedelta(minutes=10), tick=False):
        _top_up_succeeded(buyer_org, 10_000, intent_id="pi_rescue")
        funding_sweep()
    with time_machine.travel(T0 + dt.timedelta(minutes=45), tick=False):
        funding_sweep()

    lease.refresh_from_db()
    assert lease.status == Lease.Status.ACTIVE
    assert FundingTerms.objects.get(buyer=buyer_org).exhausted_at is None


# --- alerts and automatic top-up ------------------------------------------------------


def test_alerts_are_sent_once_per_crossing_on_the_page_and_by_mail(buyer_org, buyer_client, buyer):
    # given ¥100.00 of credit, an alert at ¥50.00, and ¥60.00 metered
    buyer.email = "ops@buyer.example"
    buyer.save()
    _credit(buyer_org, 10_000)
    buyer_client.put(
        "/api/v1/balance/",
        {"at_zero": "stop_orders", "grace_minutes": 0, "alert_thresholds": [5_000]},
        format="json",
    )
    _usage(buyer_org, gpu_seconds=10_800)  # 3 h at ¥20.00 = ¥60.00

    # when the beat runs twice
    funding_sweep()
    funding_sweep()

    # then one alert (¥40.00 ≤ ¥50.00), one e-mail
    alert = FundingAlert.objects.get()
    assert (alert.threshold_amount, alert.available_amount) == (5_000, 4_000)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@buyer.example"]
    assert "¥40.00" in mail.outbox[0].body
    browser = Client()
    browser.force_login(buyer)
    page = browser.get("/billing/invoices/")
    assert "Available funds fell to ¥40.00, at or below ¥50.00." in page.content.decode()

    # when credit rises above the threshold, and usage brings it under again
    _credit(buyer_org, 20_000)
    funding_sweep()
    assert FundingAlert.objects.get().cleared_at is not None
    _usage(buyer_org, gpu_seconds=36_000)  # ¥200.00 more: available ¥-60.00
    funding_sweep()
    funding_sweep()

    # then a second crossing of ¥50.00 and the crossing of zero: two more, once each
    assert sorted(
        FundingAlert.objects.filter(cleared_at=None).values_list("threshold_amount", flat=True)
    ) == [0, 5_000]
    assert len(mail.outbox) == 3
    assert mail.outbox[2].subject == "Your available funds have reached zero"


@pytest.mark.integration
def test_an_automatic_top_up_charges_the_saved_card_once_per_crossing(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    # given ¥100.00 of credit and an automatic top-up of ¥200.00 at ¥20.00 or below
    _credit(buyer_org, 10_000)
    response = buyer_client.put(
        "/api/v1/balance/",
        {
            "at_zero": "stop_orders",
            "grace_minutes": 0,
            "auto_top_up": True,
            "auto_top_up_amount": 20_000,
            "auto_top_up_below_amount": 2_000,
            "auto_top_up_payment_method": "pm_card_visa",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    _usage(buyer_org, gpu_seconds=16_200)  # 4.5 h at ¥20.00 = ¥90.00: ¥10.00 left

    # when the beat's sweep runs twice
    funding_sweep()
    funding_sweep()

    # then the saved card was charged once, off-session, on the local Stripe
    top_up = TopUp.objects.get()
    assert (top_up.amount, top_up.automatic, top_up.status) == (20_000, True, "succeeded")
    stripe_event_deliver(
        localstripe, django_capture_on_commit_callbacks, object_id=top_up.stripe_payment_intent_id
    )
    # and once Stripe's event came, available funds are ¥10.00 + ¥200.00
    funding = buyer_client.get("/api/v1/balance/").json()
    assert (funding["balance_amount"], funding["available_amount"]) == (20_000, 21_000)
    funding_sweep()
    assert TopUp.objects.count() == 1  # above the trigger again: no second charge
    assert ledger_is_balanced()


def test_funding_terms_are_bounded_and_the_credit_limit_is_staffs(buyer_org, buyer_client):
    too_long = buyer_client.put(
        "/api/v1/balance/", {"at_zero": "stop_leases", "grace_minutes": 10**9}, format="json"
    )
    own_credit = buyer_client.put(
        f"/api/v1/buyers/{buyer_org.pk}/credit-limit/",
        {"credit_limit_amount": 10**6},
        format="json",
    )
    provider = OrganisationFactory(kind=Organisation.Kind.PROVIDER)
    not_a_buyer = _staff().put(
        f"/api/v1/buyers/{provider.pk}/credit-limit/", {"credit_limit_amount": 1}, format="json"
    )

    assert too_long.status_code == 400 and "grace_minutes" in too_long.json()["errors"]
    assert own_credit.status_code == 403
    assert not_a_buyer.status_code == 404
    assert not FundingTerms.objects.exists()


def test_the_billing_page_states_balance_available_credit_and_what_happens_at_zero(
    buyer_org, buyer
):
    _credit(buyer_org, 10_000)
    _top_up_succeeded(buyer_org, 2_500, intent_id="pi_page")
    _usage(buyer_org, gpu_seconds=1_801)
    client = Client()
    client.force_login(buyer)

    page = client.get("/billing/invoices/").content.decode()

    for text in (
        "Balance and credit",
        "¥25.00",  # balance
        "¥100.00",  # credit
        "¥10.01",  # usage not yet invoiced (1,801 s at ¥20.00: ¥10.0056)
        "¥114.99",  # available
        "When available funds reach zero, new orders are refused",
    ):
        assert text in page, text
    client.cookies.load({"django_language": "zh-hans"})
    assert (
        "余额" in client.get("/billing/invoices/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    )


def test_a_buyer_paying_after_use_sees_what_it_owes_but_no_negative_available(buyer_org, buyer):
    """Not held to funding terms, there is no limit to measure against: the page
    lists what is owed and says so, and shows no "available" figure below zero."""
    _usage(buyer_org, gpu_seconds=1_801)
    client = Client()
    client.force_login(buyer)

    page = client.get("/billing/invoices/").content.decode()

    assert "¥10.01" in page  # usage not yet invoiced
    assert "Available</dt>" not in page and "-¥10.01" not in page


def test_a_member_of_another_buyer_sees_its_own_balance_only(buyer_org, buyer_client):
    _top_up_succeeded(buyer_org, 2_500, intent_id="pi_mine")
    other = member_of(OrganisationFactory(kind=Organisation.Kind.BUYER, verified=True))

    theirs = _client(other).get("/api/v1/balance/").json()

    assert (theirs["balance_amount"], theirs["prepaid"]) == (0, False)


# --- on PostgreSQL: invoices issued at once never overdraw the balance -----------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ten_invoices_issued_at_once_draw_the_balance_down_to_zero_and_never_below(
    buyer_org, provider_org
):
    import threading

    from django.db import connection

    from billing.models import InvoiceLine
    from billing.settlement import invoice_issue
    from market.catalogue import gpu_models_load
    from tests.billing.subsidy.factories import invoice_with_lines, usage_line_spec

    gpu_models_load()  # an earlier transactional test may have flushed the seeded catalogue
    # given ¥350.00 prepaid and ten drafts of ¥100.00 each
    _top_up_succeeded(buyer_org, 35_000, intent_id="pi_race")
    drafts = [
        invoice_with_lines(buyer_org, [usage_line_spec(provider=provider_org, amount=10_000)])
        for _ in range(10)
    ]
    ids = [draft.pk for draft in drafts]
    InvoiceLine.objects.filter(invoice_id__in=ids).update(provider_net_amount=10_000)
    Invoice.objects.filter(pk__in=ids).update(
        status=Invoice.Status.DRAFT, provider_net_amount=10_000
    )
    barrier = threading.Barrier(10)
    errors = []

    def issue(pk):
        try:
            barrier.wait()
            invoice_issue(invoice=Invoice.objects.get(pk=pk))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    # when all ten are issued at once
    threads = [threading.Thread(target=issue, args=(pk,)) for pk in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then the balance paid ¥350.00 exactly: three in full, one ¥50.00, the card the rest
    assert errors == []
    prepaid_amounts = sorted(
        Invoice.objects.filter(pk__in=ids).values_list("prepaid_amount", flat=True)
    )
    assert prepaid_amounts == [0] * 6 + [5_000] + [10_000] * 3
    assert Invoice.objects.filter(pk__in=ids, status=Invoice.Status.PAID).count() == 3
    assert _balance(buyer_org) == 0
    receivable = account_get(purpose=P.BUYER_RECEIVABLE, organisation=buyer_org)
    assert receivable.normal_balance == 100_000 - 35_000
    assert ledger_is_balanced()


# --- the balance section's forms (the invoices page) ------------------------------------


def _page_client(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.mark.integration
def test_a_buyer_tops_up_from_the_page_once_however_often_it_clicks(
    localstripe, buyer_org, buyer, django_capture_on_commit_callbacks
):
    browser = _page_client(buyer)
    form = {"amount": "500.00", "payment_method": "pm_card_visa", "once": "f00d"}

    # when the form is sent twice (a double click)
    first = browser.post("/billing/funding/top-up/", form)
    again = browser.post("/billing/funding/top-up/", form)

    # then one top-up of ¥500.00 was started, and nothing is credited yet
    assert first.status_code == again.status_code == 302
    top_up = TopUp.objects.get()
    assert (top_up.amount, top_up.status) == (50_000, "succeeded")
    page = browser.get("/billing/invoices/").content.decode()
    assert "Top-up of ¥500.00 succeeded. Your balance grows when Stripe confirms it." in page

    # when Stripe's signed event arrives
    stripe_event_deliver(
        localstripe, django_capture_on_commit_callbacks, object_id=top_up.stripe_payment_intent_id
    )

    # then the page shows the balance and the credited top-up
    page = browser.get("/billing/invoices/").content.decode()
    assert _balance(buyer_org) == 50_000
    assert '<dt>Prepaid balance</dt><dd class="num">¥500.00</dd>' in page
    assert "Recent top-ups" in page and "¥500.00" in page


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ("0", "Ensure this value is greater than or equal to 0.01."),
        ("12.345", "Ensure that there are no more than 2 decimal places."),
        ("lots", "Enter a number."),
        ("99999999999.99", "Ensure this value is less than or equal to"),
    ],
)
def test_a_bad_top_up_amount_is_shown_on_its_field_and_nothing_is_charged(
    buyer_org, buyer, amount, error
):
    response = _page_client(buyer).post(
        "/billing/funding/top-up/",
        {"amount": amount, "payment_method": "pm_card_visa", "once": "x1"},
    )

    assert response.status_code == 400
    assert error in response.content.decode()
    assert not TopUp.objects.exists()


def test_the_buyer_sets_what_happens_at_zero_and_its_alerts_on_the_page(buyer_org, buyer):
    browser = _page_client(buyer)

    response = browser.post(
        "/billing/funding/terms/",
        {
            "held": "true",
            "at_zero": "stop_leases",
            "grace_minutes": "30",
            "alert_thresholds": "50, 20.5，50",
        },
    )

    assert response.status_code == 302
    terms = prepaid.funding_terms_ensure(buyer=buyer_org)
    assert (terms.held, terms.at_zero, terms.grace_minutes, terms.alert_thresholds) == (
        True,
        "stop_leases",
        30,
        [5_000, 2_050],
    )
    page = browser.get("/billing/invoices/").content.decode()
    assert 'value="50.00, 20.50"' in page
    assert "Your funding terms are saved." in page


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("alert_thresholds", "50, lots", "lots is not an amount in yuan."),
        ("alert_thresholds", ", ".join(["1"] * 11), "At most 10 thresholds."),
        ("grace_minutes", "-1", "Ensure this value is greater than or equal to 0."),
        ("at_zero", "shrug", "Select a valid choice."),
        ("held", "maybe", "Select a valid choice."),
    ],
)
def test_bad_funding_terms_are_shown_on_their_field_and_nothing_changes(
    buyer_org, buyer, field, value, error
):
    body = {
        "held": "true",
        "at_zero": "stop_orders",
        "grace_minutes": "60",
        "alert_thresholds": "10",
    }
    body[field] = value

    response = _page_client(buyer).post("/billing/funding/terms/", body)

    assert response.status_code == 400
    assert error in response.content.decode()
    assert not FundingTerms.objects.filter(buyer=buyer_org).exists()


def test_a_read_only_member_sees_the_balance_but_cannot_top_up_or_change_terms(buyer_org):
    from accounts.models import Membership
    from tests.factories import MembershipFactory, UserFactory

    reader = MembershipFactory(
        organisation=buyer_org, user=UserFactory(), role=Membership.Role.READ_ONLY
    ).user
    browser = _page_client(reader)

    assert browser.get("/billing/invoices/").status_code == 200
    top_up = {"amount": "5.00", "payment_method": "pm_card_visa", "once": "r1"}
    assert browser.post("/billing/funding/top-up/", top_up).status_code == 403
    terms = {"held": "true", "at_zero": "stop_leases", "grace_minutes": "0"}
    assert browser.post("/billing/funding/terms/", terms).status_code == 403
    assert not TopUp.objects.exists() and not FundingTerms.objects.exists()


def test_the_balance_forms_speak_chinese(buyer_org, buyer):
    from django.utils import translation

    browser = _page_client(buyer)
    with translation.override("zh-hans"):
        page = browser.get("/billing/invoices/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert "银行卡充值" in page and "余额用尽时" in page


def test_a_buyer_who_tops_up_or_pays_after_use_is_never_stopped_unless_it_chooses(
    buyer_org, buyer, buyer_client
):
    # given a buyer paying after use, ¥90.00 of usage not yet invoiced, then ¥10.00 prepaid
    _usage(buyer_org, gpu_seconds=16_200)
    _top_up_succeeded(buyer_org, 1_000, intent_id="pi_small")
    OfferFactory()
    order = _order_body()

    # then it is not held: it orders, and the sweep neither alerts nor stops it
    assert buyer_client.get("/api/v1/balance/").json()["held"] is False
    assert buyer_client.post("/api/v1/orders/", order, format="json").status_code == 201
    funding_sweep()
    assert not FundingAlert.objects.exists()

    # when it chooses on the page to be held to its funds (¥10.00 − ¥90.00 < 0)
    browser = Client()
    browser.force_login(buyer)
    browser.post(
        "/billing/funding/terms/",
        {"held": "true", "at_zero": "stop_orders", "grace_minutes": "0", "alert_thresholds": ""},
    )

    # then the next order is refused, saying why, and the page says what holds
    refused = buyer_client.post("/api/v1/orders/", order, format="json")
    assert refused.status_code == 409
    assert "Your available funds are -¥80.00" in refused.json()["detail"]
    page = browser.get("/billing/invoices/").content.decode()
    assert "When available funds reach zero, new orders are refused" in page

    # and choosing to pay after use again lifts it
    browser.post(
        "/billing/funding/terms/",
        {"held": "false", "at_zero": "stop_orders", "grace_minutes": "0", "alert_thresholds": ""},
    )
    assert buyer_client.post("/api/v1/orders/", order, format="json").status_code == 201


def test_a_buyer_granted_credit_is_held_and_cannot_opt_out(buyer_org, buyer_client):
    _credit(buyer_org, 10_000)
    assert buyer_client.get("/api/v1/balance/").json()["held"] is True

    answer = buyer_client.put(
        "/api/v1/balance/",
        {"held": False, "at_zero": "stop_orders", "grace_minutes": 0},
        format="json",
    )

    assert answer.status_code == 400
    assert "held" in answer.json()["errors"]
    assert FundingTerms.objects.get(buyer=buyer_org).held is True
