import pytest
from django.core.management import call_command

from accounts.models import Organisation
from market.models import Lease, Order


@pytest.mark.django_db
def test_demo_data_loads_twice_without_change(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # matching runs after commit
        call_command("demo_data")
    counts = (Organisation.objects.count(), Order.objects.count(), Lease.objects.count())

    call_command("demo_data")

    assert counts[1] == 3
    assert counts[2] >= 3
    assert (Organisation.objects.count(), Order.objects.count(), Lease.objects.count()) == counts
