"""A payout run started from the payouts page (issue 12, long actions): the
button queues it for a worker through the outbox and answers at once; the page
shows a progress card that polls (htmx) while the run is queued and running,
and stops polling when it is done, with the payouts, their total and the bank
batch file."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounts.models import Organisation
from billing.models import PayoutAccount, PayoutMethod, PayoutRun
from billing.settlement import invoice_mark_paid
from billing.tasks import payout_run_execute
from core.models import OutboxMessage
from tests.billing.conftest import open_invoice
from tests.factories import OrganisationFactory, UserFactory, member_of


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def paid_share(buyer_org, settings):
    """A bank-paid provider's ¥200.00 sale on a paid invoice: ¥190.00 after the 5 % fee."""
    settings.PAYOUT_BANK_ACCOUNT = "1234500001"
    provider = OrganisationFactory(kind=Organisation.Kind.PROVIDER, legal_name="庆阳绿色算力")
    PayoutAccount.objects.create(
        provider=provider,
        method=PayoutMethod.BANK_TRANSFER,
        account_number="6222021234567890123",
        account_name="庆阳绿色算力",
        bank_name="中国工商银行庆阳分行",
        bank_code="102826000015",
        province="甘肃",
        city="庆阳",
    )
    invoice = open_invoice(buyer=buyer_org, provider=provider)
    invoice_mark_paid(invoice=invoice, amount=invoice.buyer_amount, business_key="test:paid")
    return provider


@pytest.mark.django_db
def test_staff_start_a_payout_run_and_the_page_follows_it_until_done(paid_share):
    staff = _client(UserFactory(is_staff=True))

    # when staff press "Run payouts now": the answer comes at once, the run waits
    # for a worker (in this test no worker runs the outbox's message yet)
    answer = staff.post(reverse("billing-payout-run-start"))
    assert answer.status_code == 302
    message = OutboxMessage.objects.get(task_name="billing.payout_run_execute")
    key = message.args[0]
    assert answer["Location"] == f"{reverse('billing-payouts')}?run={key}"
    assert not PayoutRun.objects.filter(key=key).exists()

    # then the page shows the run queued, in a card that polls its progress
    page = staff.get(answer["Location"]).content.decode()
    assert f"Payout run {key}" in page and "queued" in page
    assert "Waiting for a worker to start it" in page
    progress_url = reverse("billing-payout-run-progress", kwargs={"key": key})
    assert f'hx-get="{progress_url}"' in page and 'hx-trigger="every 2s"' in page
    assert staff.get(progress_url).status_code == 200

    # while the worker is at it, the card says running (and keeps polling)
    run = PayoutRun.objects.create(key=key)
    card = staff.get(progress_url).content.decode()
    assert "running" in card and "Paying out: 0 payouts prepared so far." in card
    assert "hx-trigger" in card
    run.delete()

    # when the worker has run it, the card says done, with the total, and stops polling
    payout_run_execute(key)
    card = staff.get(progress_url).content.decode()
    assert "done" in card and "Done: 1 payout of ¥190.00 in all." in card
    done = PayoutRun.objects.get(key=key)
    assert reverse("billing-payout-run-bank-batch", kwargs={"pk": done.pk}) in card
    assert "hx-trigger" not in card
    with translation.override("zh-hans"):
        chinese = staff.get(progress_url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "已完成" in chinese and "¥190.00" in chinese


@pytest.mark.django_db
def test_a_failed_attempt_shows_on_the_card_and_the_run_is_tried_again(paid_share):
    staff = _client(UserFactory(is_staff=True))
    staff.post(reverse("billing-payout-run-start"))
    message = OutboxMessage.objects.get(task_name="billing.payout_run_execute")
    OutboxMessage.objects.filter(pk=message.pk).update(last_error="ConnectionError()")

    card = staff.get(
        reverse("billing-payout-run-progress", kwargs={"key": message.args[0]})
    ).content.decode()

    assert "queued" in card and "The last attempt failed; it is tried again shortly." in card


@pytest.mark.django_db
def test_only_staff_start_or_follow_a_payout_run(paid_share):
    provider = _client(member_of(paid_share, "provider-user"))
    staff = _client(UserFactory(is_staff=True))

    assert provider.post(reverse("billing-payout-run-start")).status_code == 404
    assert not OutboxMessage.objects.filter(task_name="billing.payout_run_execute").exists()
    staff.post(reverse("billing-payout-run-start"))
    key = OutboxMessage.objects.get(task_name="billing.payout_run_execute").args[0]
    url = reverse("billing-payout-run-progress", kwargs={"key": key})
    assert provider.get(url).status_code == 404
    # a run nobody started is not found; the page then shows no card
    assert (
        staff.get(reverse("billing-payout-run-progress", kwargs={"key": "nope"})).status_code == 404
    )
    assert "payout-run-progress" not in staff.get("/billing/payouts/?run=nope").content.decode()
