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


def test_the_book_page_shows_depth_by_price_level(page, live_server):
    OfferFactory(price_amount=1_800)
    OfferFactory(price_amount=2_100)

    page.goto(f"{live_server.url}/market/book/")

    book = page.locator("section.book", has_text="NVIDIA H800 SXM5 80GB")
    asks = book.locator("table").nth(1).inner_text()
    assert asks.index("¥18.00") < asks.index("¥21.00")
    assert "No standing bids." in book.inner_text()


def test_order_this_from_a_quote_places_the_quoted_order(page, live_server, logged_in):
    # given 4 H800 GPUs at ¥18.00 and an H20 offer the buyer will not accept
    from market.models import Lease, Order
    from tests.factories import NodeFactory, gpu

    OfferFactory(node=NodeFactory(gpu_count=4), price_amount=1_800)
    OfferFactory(node=NodeFactory(gpu_model=gpu("nvidia-h20")), price_amount=600)
    member_of(OrganisationFactory(kind=Organisation.Kind.BUYER), "quote.buyer")
    logged_in("quote.buyer")

    # when the buyer asks for a quote of 4 H800 for 5 hours
    page.goto(f"{live_server.url}/market/quote/")
    page.check("label:has-text('NVIDIA H800 SXM5 80GB') input")
    page.fill("#id_gpu_count", "4")
    page.fill("#id_hours", "5")
    page.click("main form button[type=submit]")

    # then it costs ¥360.00 and says why the H20 was left out
    assert page.locator("#quote-cost").inner_text() == "¥360.00"
    assert "GPU model not accepted" in page.locator("#quote-excluded").inner_text()

    # and *Order this* opens the order form filled in alike; placing it fills at the quote
    page.click("#order-this")
    page.wait_for_url("**/market/orders/new/**")
    assert page.input_value("#id_gpu_count") == "4"
    page.fill("#id_max_price", "18")
    page.click("main form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/market/orders/")
    order = Order.objects.get()
    assert (order.gpu_count, order.hours, order.gpus_filled) == (4, 5, 4)
    assert Lease.objects.get().price_amount == 1_800
