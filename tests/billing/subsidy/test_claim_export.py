"""The authority asks for a claim month's CSV from the programme page; a
worker prepares it while the page shows its progress, then offers the file."""

import pytest
import time_machine

from billing.subsidy import claim_csv, claim_export_run
from tests.billing.subsidy.factories import programme, spread_organisation
from tests.billing.trail.world import CLAIM_DAY, trail_world
from tests.factories import member_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    with time_machine.travel(CLAIM_DAY, tick=False):
        yield trail_world()


def _page(client, world, token, language="en"):
    return client.get(
        f"/subsidy/programmes/{world.programme.pk}/?export={token}", HTTP_ACCEPT_LANGUAGE=language
    ).content.decode()


def test_the_csv_is_prepared_by_a_worker_while_the_page_shows_its_progress(client, world):
    client.force_login(world.authority_user)
    url = f"/subsidy/programmes/{world.programme.pk}/claims/2026/5/export/"

    # when the authority asks (the worker has not run yet: nothing committed here)
    answer = client.post(url)

    # then the page follows the export, queued, and polls for it
    assert answer.status_code == 302
    token = answer["Location"].split("export=")[1].split("#")[0]
    assert answer["Location"].endswith("#claims")
    page = _page(client, world, token)
    assert "Claim CSV for 2026-05" in page and ">queued<" in page
    status_url = f"/subsidy/programmes/{world.programme.pk}/claim-exports/{token}/"
    assert f'hx-get="{status_url}"' in page
    download = f"/subsidy/programmes/{world.programme.pk}/claim-exports/{token}.csv"
    assert client.get(download).status_code == 404  # not ready yet

    # when the worker has built it
    assert claim_export_run(token=token) == 3

    # then the card says so, stops polling and offers the very file of the claim
    card = client.get(status_url).content.decode()
    assert ">ready<" in card and "3 rows." in card and "hx-get" not in card
    csv = client.get(download)
    assert csv["Content-Disposition"] == (
        f'attachment; filename="claim-programme-{world.programme.pk}-2026-05.csv"'
    )
    assert csv.content.decode() == claim_csv(programme=world.programme, year=2026, month=5)
    # and in Chinese
    assert "2026-05 补贴申领 CSV" in _page(client, world, token, "zh-hans")


def test_with_the_eager_worker_the_file_is_ready_on_arrival(
    client, world, django_capture_on_commit_callbacks
):
    client.force_login(world.authority_user)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(f"/subsidy/programmes/{world.programme.pk}/claims/2026/5/export/")

    page = client.get(answer["Location"].split("#")[0]).content.decode()  # no fragment is sent

    assert ">ready<" in page and "3 rows." in page


def test_another_authority_never_sees_the_export_and_an_expired_one_says_so(client, world):
    client.force_login(world.authority_user)
    answer = client.post(f"/subsidy/programmes/{world.programme.pk}/claims/2026/5/export/")
    token = answer["Location"].split("export=")[1].split("#")[0]
    claim_export_run(token=token)
    other = spread_organisation("authority")
    own = programme(other)

    client.force_login(member_of(other, "other.authority"))
    for path in (f"claim-exports/{token}/", f"claim-exports/{token}.csv"):
        assert client.get(f"/subsidy/programmes/{world.programme.pk}/{path}").status_code == 404
        assert client.get(f"/subsidy/programmes/{own.pk}/{path}").status_code == 404
    # an unknown (or expired) token: the page asks to prepare it again
    client.force_login(world.authority_user)
    assert "That CSV is no longer kept" in _page(client, world, "no-such-token")
