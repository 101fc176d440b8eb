"""The public market board: per model the lowest and median ask, GPUs available,
¥/PFLOPS-hour; 7 days of matched trades; capacity by hub; *Order this*."""

import html
import re
from decimal import Decimal

import pytest

from tests.factories import LeaseFactory, NodeFactory, OfferFactory, SiteFactory, gpu

pytestmark = pytest.mark.django_db


def text(page: bytes) -> str:
    body = page.decode().split("<main", 1)[1]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def offer(price: int, *, hub="ningxia", green="0.900", slug="nvidia-h800-sxm", gpus=8):
    site = SiteFactory(hub=hub, region="宁夏", green_share=Decimal(green))
    node = NodeFactory(site=site, gpu_model=gpu(slug), gpu_count=gpus)
    return OfferFactory(node=node, price_amount=price)


def test_the_board_shows_each_model_lowest_and_median_ask_and_capacity_by_hub(client):
    offer(1_800)
    offer(2_000)
    offer(2_400, hub="gansu", green="0.500")
    offer(600, slug="nvidia-h20", hub="gansu", green="0.500", gpus=4)
    client.cookies["django_language"] = "en"

    page = text(client.get("/market/board/").content)

    # H800: asks ¥18, ¥20, ¥24 -> lowest ¥18.00, median ¥20.00, 24 GPUs; ¥18 / 0.9894 PFLOPS
    assert "H800 SXM5 80GB ¥18.00 ¥20.00 ¥18.19 24 3 Order this" in page
    assert "H20 96GB ¥6.00 ¥6.00" in page
    # Ningxia: 16 GPUs at 90 % green; Gansu: 8 + 4 GPUs at 50 %
    assert "Ningxia (宁夏) 16 90%" in page
    assert "Gansu (甘肃) 12 50%" in page


def test_order_this_opens_the_order_form_filled_in(client, buyer):
    cheapest = offer(1_800)
    page = client.get("/market/board/").content.decode()
    link = html.unescape(
        re.search(r'<a class="button small" href="([^"]+)">Order this</a>', page).group(1)
    )
    h800 = gpu("nvidia-h800-sxm")
    assert (
        link
        == f"/market/orders/new/?accepted_models={h800.pk}&max_price=18.00&gpu_count=8&hours=24"
    )

    client.force_login(buyer)
    form = client.get(link).content.decode()

    assert f'value="{h800.pk}"' in form and "checked" in form.split(f'value="{h800.pk}"')[1][:40]
    assert 'name="max_price" value="18.00"' in form
    assert 'name="gpu_count" value="8"' in form
    # the models on offer come first, with their price
    first = re.search(r'<input type="checkbox" name="accepted_models" value="(\d+)"', form)
    assert int(first.group(1)) == cheapest.gpu_model_id
    assert "NVIDIA H800 SXM5 80GB — from ¥18.00 per GPU-hour, 8 GPUs available" in html.unescape(
        form
    )


def test_the_board_charts_the_last_seven_days_of_matched_trades(client):
    LeaseFactory(offer=offer(1_800), price_amount=1_800, gpu_count=2)

    page = client.get("/market/board/").content.decode()

    assert '<section class="card chart" id="history">' in page
    assert "<svg" in page.split('id="history"')[1].split("</section>")[0]


def test_the_board_reads_in_a_bounded_number_of_queries(client, django_assert_max_num_queries):
    for i in range(30):
        offer(1_500 + 10 * i, slug=["nvidia-h800-sxm", "nvidia-h20", "huawei-ascend-910b3"][i % 3])

    with django_assert_max_num_queries(20):
        assert client.get("/market/board/").status_code == 200
    with django_assert_max_num_queries(6):  # cached: the board, the history, the count
        assert client.get("/market/board/").status_code == 200
