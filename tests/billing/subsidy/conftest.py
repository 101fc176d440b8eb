import pytest

from accounts.models import Organisation
from tests.billing.subsidy.factories import spread_organisation
from tests.factories import member_of


@pytest.fixture
def authority_org(db):
    return spread_organisation(
        Organisation.Kind.AUTHORITY, legal_name="Qingyang Bureau of Industry"
    )


@pytest.fixture
def buyer_org(db):
    return spread_organisation(Organisation.Kind.BUYER, legal_name="Hangzhou Zhimo AI Co., Ltd.")


@pytest.fixture
def provider_org(db):
    return spread_organisation(
        Organisation.Kind.PROVIDER, legal_name="Qingyang Green Compute Co., Ltd."
    )


@pytest.fixture
def authority(authority_org):
    return member_of(authority_org, "v-authority")


@pytest.fixture
def buyer(buyer_org):
    return member_of(buyer_org, "v-buyer")


@pytest.fixture
def provider(provider_org):
    return member_of(provider_org, "v-provider")
