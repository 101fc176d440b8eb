import itertools

import factory
from django.contrib.auth import get_user_model

from accounts.credit_code import check_character
from accounts.models import Membership, Organisation

_codes = itertools.count(1)


def make_credit_code(seed: int | None = None) -> str:
    """A well-formed, check-character-valid credit code (Shenzhen region)."""
    number = next(_codes) if seed is None else seed
    first17 = f"91440300{number:09d}"
    return first17 + check_character(first17)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct-horse-battery")


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation

    kind = Organisation.Kind.BUYER
    legal_name = factory.Sequence(lambda n: f"Organisation {n} Co., Ltd.")
    credit_code = factory.LazyFunction(make_credit_code)
    verified = True


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organisation = factory.SubFactory(OrganisationFactory)
    role = Membership.Role.OWNER


def member_of(organisation: Organisation, username: str | None = None):
    """A user who owns `organisation`."""
    kwargs = {"username": username} if username else {}
    return MembershipFactory(organisation=organisation, user=UserFactory(**kwargs)).user
