import pytest

from accounts.models import Organisation
from tests.factories import OfferFactory, OrganisationFactory, member_of

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_order_form_estimates_the_cost_live_as_the_buyer_types(page, live_server, logged_in):
    # given: 16 H800 GPUs on offer at ¥18.00 per GPU-hour
    OfferFactory(price_amount=1_800, gpus_total=8, gpus_available=8)
    OfferFactory(price_amount=1_800, gpus_total=8, gpus_available=8)
    member_of(OrganisationFactory(kind=Organisation.Kind.BUYER), "lin.buyer")
    logged_in("lin.buyer")

    # when: the buyer asks for 4 H800s for 10 hours at up to ¥20.00
    page.goto(f"{live_server.url}/market/orders/new/")
    page.check("label:has-text('NVIDIA H800 SXM5 80GB') input")
    page.fill("#id_gpu_count", "4")
    page.fill("#id_hours", "10")
    page.fill("#id_max_price", "20")

    # then: without submitting, the estimate shows 40 GPU-hours costing ¥720.00
    estimate = page.locator("#estimate")
    estimate.get_by_text("¥720.00").wait_for()
    text = estimate.inner_text()
    assert "40" in text
    assert "39.58" in text  # 40 GPU-hours × 989.4 TFLOPS = 39.58 PFLOPS-hours
    assert "4 of 4 GPUs would be matched now" in text
    assert "¥800.00" in text  # at most, at the maximum price
