import datetime as dt
import hashlib
import itertools
import secrets
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.credit_code import check_character
from accounts.models import Membership, Organisation
from market.models import GPUModel, Lease, Node, Offer, Order, Site, UsageRecord

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


# --- market ------------------------------------------------------------------


def gpu(slug: str) -> GPUModel:
    """A catalogue entry (seeded by migration from market/data/gpu_models.json)."""
    return GPUModel.objects.get(slug=slug)


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    provider = factory.SubFactory(OrganisationFactory, kind=Organisation.Kind.PROVIDER)
    name = factory.Sequence(lambda n: f"Site {n}")
    region = "甘肃"
    hub = "gansu"
    green_share = Decimal("0.600")
    pue = Decimal("1.20")
    carbon_intensity_g_per_kwh = 550
    latency_class = "national"


class NodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Node

    site = factory.SubFactory(SiteFactory)
    name = factory.Sequence(lambda n: f"node-{n:03d}")
    gpu_model = factory.LazyFunction(lambda: gpu("nvidia-h800-sxm"))
    gpu_count = 8
    interconnect = "NVLink + 400G InfiniBand"
    # A node whose agent reports (new nodes await their agent and are not matched).
    state = Node.State.ONLINE
    token_digest = factory.LazyFunction(lambda: hashlib.sha256(secrets.token_bytes(32)).hexdigest())


class OfferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Offer

    node = factory.SubFactory(NodeFactory)
    site = factory.LazyAttribute(lambda o: o.node.site)
    provider = factory.LazyAttribute(lambda o: o.site.provider)
    gpu_model = factory.LazyAttribute(lambda o: o.node.gpu_model)
    gpus_total = factory.LazyAttribute(lambda o: o.node.gpu_count)
    gpus_available = factory.LazyAttribute(lambda o: o.gpus_total)
    price_amount = 2_000  # ¥20.00 per GPU-hour
    available_from = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=1))
    available_until = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=60))
    min_hours = 1
    max_hours = 24 * 60


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order
        skip_postgeneration_save = True

    buyer = factory.SubFactory(OrganisationFactory, kind=Organisation.Kind.BUYER)
    gpu_count = 8
    hours = 24
    max_price_amount = 3_000
    start_by = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(hours=6))

    @factory.post_generation
    def accepted_models(self, create, extracted, **kwargs):
        if create and extracted:
            self.accepted_models.set(extracted)


class LeaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lease

    offer = factory.SubFactory(OfferFactory)
    node = factory.LazyAttribute(lambda o: o.offer.node)
    provider = factory.LazyAttribute(lambda o: o.offer.provider)
    order = factory.SubFactory(OrderFactory)
    buyer = factory.LazyAttribute(lambda o: o.order.buyer)
    gpu_count = 2
    price_amount = factory.LazyAttribute(lambda o: o.offer.price_amount)
    starts_at = factory.LazyFunction(
        lambda: timezone.now().replace(minute=0, second=0, microsecond=0)
    )
    ends_at = factory.LazyAttribute(lambda o: o.starts_at + dt.timedelta(hours=1))
    status = Lease.Status.ACTIVE


class UsageRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageRecord

    lease = factory.SubFactory(LeaseFactory)
    window_start = factory.LazyAttribute(lambda o: o.lease.starts_at)
    window_end = factory.LazyAttribute(lambda o: o.lease.ends_at)
    gpu_seconds_delivered = factory.LazyAttribute(
        lambda o: o.lease.gpu_count * int((o.window_end - o.window_start).total_seconds())
    )
    gpu_seconds_lost = 0
    energy_wh = 0
    carbon_g = 0
    avg_utilisation = Decimal("90.00")
