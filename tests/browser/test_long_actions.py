"""A long action shows its progress instead of a frozen page: staff follow a
payout run on the payouts page while a worker runs it; the card turns from
queued to done without a reload."""

import uuid

import pytest
from django.utils import timezone

from billing.tasks import payout_run_execute
from core.models import OutboxMessage
from tests.browser.conftest import log_in, screenshot
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("language", "queued", "done"),
    [
        ("en", "queued", "Done: 0 payouts of ¥0.00 in all."),
        ("zh-hans", "排队中", "已完成：共 0 笔出款"),
    ],
)
def test_staff_watch_a_payout_run_go_from_queued_to_done(
    page_in, live_server, language, queued, done
):
    UserFactory(username="ops", is_staff=True)
    key = "payouts-now-browser"
    # what "Run payouts now" writes, before a worker takes it
    OutboxMessage.objects.create(
        task_name="billing.payout_run_execute",
        args=[key],
        key=f"payout-run:{key}",
        task_id=f"outbox:{uuid.uuid4()}",
        available_at=timezone.now(),
    )
    staff = log_in(page_in(language), live_server, "ops")
    staff.goto(f"{live_server.url}/billing/payouts/?run={key}")
    card = staff.locator("#payout-run-progress")
    assert queued in card.locator(".badge").inner_text()
    assert card.locator("progress").count() == 1
    screenshot(staff, f"payout-run-queued-{language}")
    loaded = staff.evaluate("() => performance.timeOrigin")

    payout_run_execute(key)  # the worker

    card.locator("p", has_text=done).wait_for(timeout=30_000)
    assert card.locator("progress").count() == 0
    assert staff.evaluate("() => performance.timeOrigin") == loaded  # no reload


@pytest.mark.parametrize(
    ("language", "queued", "ready"),
    [("en", "queued", "3 rows."), ("zh-hans", "排队中", "共 3 行。")],
)
def test_the_authority_watches_a_claim_csv_being_prepared(
    page_in, live_server, language, queued, ready
):
    from billing.subsidy import claim_export_request, claim_export_run
    from tests.billing.trail.world import trail_world
    from tests.support import celery_broker, unused_redis_url

    world = trail_world()
    # what "Prepare CSV" does, with no worker to take it yet (the broker is down:
    # the outbox keeps the task for its relay)
    with celery_broker(unused_redis_url()):
        token = claim_export_request(programme=world.programme, year=2026, month=5)
    authority = log_in(page_in(language), live_server, world.authority_user.username)
    authority.goto(f"{live_server.url}/subsidy/programmes/{world.programme.pk}/?export={token}")
    card = authority.locator("#claim-export")
    assert queued in card.locator(".badge").inner_text()
    assert card.locator("progress").count() == 1
    loaded = authority.evaluate("() => performance.timeOrigin")

    claim_export_run(token=token)  # the worker

    card.locator("p", has_text=ready).wait_for(timeout=30_000)
    assert card.locator("progress").count() == 0
    assert card.locator("a", has_text="CSV").count() == 1
    assert authority.evaluate("() => performance.timeOrigin") == loaded  # no reload
    screenshot(authority, f"claim-export-ready-{language}")
