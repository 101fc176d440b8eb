import time

import pytest
from django.db import OperationalError

from demo.scheduler import InProcessBeat
from market.models import Order
from tests.factories import OfferFactory, OrderFactory, gpu


@pytest.mark.django_db(transaction=True)
def test_the_in_process_beat_runs_the_matching_round_on_its_schedule(settings):
    # given: an open order that nothing has matched yet, and the embedded
    # mode's beat thread with only the matching round scheduled
    offer = OfferFactory(price_amount=1_800)
    order = OrderFactory(
        gpu_count=4, hours=2, max_price_amount=2_000, accepted_models=[gpu("nvidia-h800-sxm")]
    )
    settings.CELERY_BEAT_SCHEDULE = {"match": {"task": "market.match_round", "schedule": 0.1}}

    # when
    beat = InProcessBeat(tick=0.05)
    beat.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                order.refresh_from_db()
            except OperationalError:
                # the in-memory test database (SQLite, shared cache) locks a whole
                # table while the beat thread's round writes it; read again
                time.sleep(0.1)
                continue
            if order.status == Order.Status.FILLED:
                break
            time.sleep(0.1)
    finally:
        beat.stop()
        beat.join(timeout=10)

    # then: filled at the ask
    assert order.status == Order.Status.FILLED
    lease = order.leases.get()
    assert (lease.gpu_count, lease.price_amount, lease.offer_id) == (4, 1_800, offer.pk)
