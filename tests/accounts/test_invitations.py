"""Invitations (signed, expiring, once) and the roles they give, enforced on
pages and API."""

import datetime as dt

import pytest
import time_machine
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.models import Invitation, Membership, Organisation
from market.models import Order
from tests.factories import OrganisationFactory, UserFactory, make_credit_code, member_of

User = get_user_model()
pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 4, 1, 2, 0, tzinfo=dt.UTC)
PASSWORD = "Quiet-river-stone-2026"


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _invite_authority(staff) -> dict:
    response = _api(staff).post(
        "/api/v1/authorities/",
        {
            "legal_name": "Ningxia Compute Voucher Office",
            "credit_code": make_credit_code(),
            "region": "宁夏",
            "email": "li.na@nx.gov.cn",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def _accept(token: str, username: str = "li.na") -> object:
    return APIClient().post(
        "/api/v1/invitations/accept/",
        {"token": token, "username": username, "password": PASSWORD},
        format="json",
    )


@time_machine.travel(T0, tick=False)
def test_staff_invite_an_authority_whose_admin_sets_a_password_and_lands_in_its_home(client):
    staff = UserFactory(is_staff=True)
    invitation = _invite_authority(staff)
    authority = Organisation.objects.get(pk=invitation["organisation"])
    assert (authority.kind, authority.verified) == ("authority", True)
    assert invitation["role"] == "admin"
    assert invitation["link"].endswith(f"/invitations/{invitation['token']}/")

    # the invitee opens the link, sets a password and lands on the authority's dashboard
    page = client.get(f"/invitations/{invitation['token']}/")
    assert "Ningxia Compute Voucher Office" in page.content.decode()
    joined = client.post(
        f"/invitations/{invitation['token']}/",
        {"username": "li.na", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert joined.status_code == 302
    assert joined["Location"] == "/subsidy/"
    user = User.objects.get(username="li.na")
    assert user.email == "li.na@nx.gov.cn"
    assert Membership.objects.get(user=user).role == "admin"
    assert client.get("/subsidy/").status_code == 200


@time_machine.travel(T0, tick=False)
def test_an_invitation_works_once_a_second_use_is_refused():
    invitation = _invite_authority(UserFactory(is_staff=True))
    assert _accept(invitation["token"]).status_code == 201

    again = _accept(invitation["token"], username="someone.else")

    assert again.status_code == 409
    assert again.json()["errors"] == {"token": ["The invitation has already been used."]}
    assert not User.objects.filter(username="someone.else").exists()
    assert Membership.objects.filter(organisation_id=invitation["organisation"]).count() == 1


def test_an_expired_invitation_is_refused_and_nobody_joins(client):
    with time_machine.travel(T0, tick=False):
        invitation = _invite_authority(UserFactory(is_staff=True))

    with time_machine.travel(T0 + dt.timedelta(days=7, seconds=1), tick=False):
        answer = _accept(invitation["token"])
        page = client.get(f"/invitations/{invitation['token']}/")

    assert answer.status_code == 400
    assert answer.json()["errors"] == {"token": ["The invitation has expired."]}
    assert page.status_code == 410
    assert not User.objects.filter(username="li.na").exists()
    assert Invitation.objects.get().accepted_at is None


@time_machine.travel(T0, tick=False)
def test_a_forged_or_altered_invitation_token_is_not_found():
    invitation = _invite_authority(UserFactory(is_staff=True))
    forged = invitation["token"][:-2] + ("AA" if not invitation["token"].endswith("AA") else "BB")

    assert _accept(forged).status_code == 404
    assert _accept("not-a-token").status_code == 404


@time_machine.travel(T0, tick=False)
def test_an_owner_invites_a_read_only_member_who_can_look_but_not_order_or_pay(client):
    buyer = OrganisationFactory(kind=Organisation.Kind.BUYER)
    owner = member_of(buyer)
    made = _api(owner).post(
        "/api/v1/organisations/me/invitations/",
        {"email": "auditor@example.com", "role": "read_only"},
        format="json",
    )
    assert made.status_code == 201, made.content
    joined = _accept(made.json()["token"], username="auditor").json()
    auditor = APIClient()
    auditor.credentials(HTTP_AUTHORIZATION=f"Token {joined['token']}")

    # looks
    assert auditor.get("/api/v1/orders/").status_code == 200
    assert auditor.get("/api/v1/invoices/").status_code == 200
    # changes nothing: no order, no payment, no invitation, on the API ...
    order = auditor.post(
        "/api/v1/orders/",
        {
            "gpu_count": 1,
            "hours": 1,
            "max_price_amount": 3_000,
            "start_by": (T0 + dt.timedelta(days=1)).isoformat(),
        },
        format="json",
    )
    assert order.status_code == 403
    assert "read-only" in order.json()["detail"]
    assert auditor.post("/api/v1/invoices/1/pay/", {}, format="json").status_code == 403
    assert (
        auditor.post(
            "/api/v1/organisations/me/invitations/",
            {"email": "x@example.com", "role": "admin"},
            format="json",
        ).status_code
        == 403
    )
    # ... nor on the pages
    client.force_login(User.objects.get(username="auditor"))
    assert client.get("/market/orders/").status_code == 200
    assert client.post("/market/orders/new/", {}).status_code == 403
    assert not Order.objects.exists()


@time_machine.travel(T0, tick=False)
def test_a_plain_member_cannot_invite_and_an_admin_can_change_roles():
    provider = OrganisationFactory(kind=Organisation.Kind.PROVIDER)
    owner = member_of(provider)
    made = _api(owner).post(
        "/api/v1/organisations/me/invitations/",
        {"email": "ops@example.com", "role": "member"},
        format="json",
    )
    member = User.objects.get(pk=_accept(made.json()["token"], username="ops").json()["user"]["id"])

    refused = _api(member).post(
        "/api/v1/organisations/me/invitations/",
        {"email": "x@example.com", "role": "member"},
        format="json",
    )
    membership = Membership.objects.get(user=member)
    changed = _api(owner).patch(
        f"/api/v1/organisations/me/members/{membership.pk}/", {"role": "read_only"}, format="json"
    )

    assert refused.status_code == 403
    assert changed.status_code == 200
    assert Membership.objects.get(user=member).role == "read_only"
    listed = _api(owner).get("/api/v1/organisations/me/members/").json()["results"]
    assert {(m["username"], m["role"]) for m in listed} == {
        (owner.username, "owner"),
        ("ops", "read_only"),
    }


@time_machine.travel(T0, tick=False)
def test_the_account_page_invites_and_shows_the_link_once(client):
    buyer = OrganisationFactory(kind=Organisation.Kind.BUYER)
    client.force_login(member_of(buyer))

    client.post("/account/invitations/", {"email": "cfo@example.com", "role": "member"})
    first = client.get("/account/").content.decode()
    second = client.get("/account/").content.decode()

    invitation = Invitation.objects.get(email="cfo@example.com")
    assert invitation.role == "member"
    link = "/invitations/ey"  # the signed token's start
    assert link in first and link not in second


@time_machine.travel(T0, tick=False)
def test_staff_register_an_authority_on_a_page_and_its_admin_follows_the_link_home(client):
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    code = make_credit_code()

    # a bad credit code is a 400 with the error on its field, and nothing is stored
    refused = client.post(
        "/staff/authorities/invite/",
        {"legal_name": "Guizhou Big Data Bureau", "credit_code": "123", "email": "a@gz.gov.cn"},
    )
    assert refused.status_code == 400
    field = refused.content.decode().split('<label for="id_credit_code">')[0].rsplit("<div", 1)[1]
    assert "has-error" in field  # the credit code's own field carries the error
    assert not Organisation.objects.filter(kind=Organisation.Kind.AUTHORITY).exists()

    done = client.post(
        "/staff/authorities/invite/",
        {
            "legal_name": "Guizhou Big Data Bureau",
            "credit_code": code,
            "region": "贵州",
            "email": "wang.fang@gz.gov.cn",
        },
        follow=True,
    )
    page = done.content.decode()
    authority = Organisation.objects.get(kind=Organisation.Kind.AUTHORITY)
    assert (authority.legal_name, authority.verified) == ("Guizhou Big Data Bureau", True)
    invitation = Invitation.objects.get(organisation=authority)
    assert (invitation.email, invitation.role) == ("wang.fang@gz.gov.cn", "admin")
    # the link is shown once; the list shows the invitation open until it expires
    link = page.split('id="authority-invitation-link">')[1].split("<")[0]
    assert "/invitations/" in link
    assert "wang.fang@gz.gov.cn: open until" in page
    assert link not in client.get("/staff/authorities/invite/").content.decode()

    # the invitee follows it, sets a password and lands in the authority's home
    client.logout()
    path = link.split("testserver", 1)[1]
    joined = client.post(
        path, {"username": "wang.fang", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert (joined.status_code, joined["Location"]) == (302, "/subsidy/")
    assert Membership.objects.get(user__username="wang.fang").organisation == authority


def test_only_staff_see_the_authority_registration_page(client):
    buyer = OrganisationFactory(kind=Organisation.Kind.BUYER)
    client.force_login(member_of(buyer))
    assert client.get("/staff/authorities/invite/").status_code == 404
    assert (
        client.post(
            "/staff/authorities/invite/",
            {"legal_name": "X", "credit_code": make_credit_code(), "email": "x@example.com"},
        ).status_code
        == 404
    )
    assert not Organisation.objects.filter(kind=Organisation.Kind.AUTHORITY).exists()


def test_a_bad_credit_code_is_explained_in_the_page_language(client):
    client.force_login(UserFactory(is_staff=True))
    client.cookies["django_language"] = "zh-hans"

    refused = client.post(
        "/staff/authorities/invite/",
        {"legal_name": "贵州省大数据局", "credit_code": "123", "email": "a@gz.gov.cn"},
    )

    assert refused.status_code == 400
    assert "统一社会信用代码为 18 位，此代码为 3 位。" in refused.content.decode()
