from decimal import Decimal

import pytest

from market.models import GPUModel
from tests.factories import LeaseFactory, UsageRecordFactory


@pytest.mark.django_db
def test_catalogue_is_seeded_with_the_models_the_exchange_promises():
    slugs = set(GPUModel.objects.values_list("slug", flat=True))
    assert {
        "nvidia-h100-sxm",
        "nvidia-h800-sxm",
        "nvidia-h20",
        "huawei-ascend-910b3",
        "cambricon-mlu370-x8",
    } <= slugs
    assert GPUModel.objects.get(slug="nvidia-h100-sxm").dense_tflops == Decimal("989.40")
    assert GPUModel.objects.get(slug="huawei-ascend-910b3").domestic is True


@pytest.mark.django_db
def test_a_usage_record_factory_builds_a_consistent_chain():
    record = UsageRecordFactory(lease=LeaseFactory(gpu_count=2))
    assert record.gpu_seconds_delivered == 2 * 3600
    assert record.lease.buyer == record.lease.order.buyer
    assert record.lease.provider == record.lease.node.site.provider
