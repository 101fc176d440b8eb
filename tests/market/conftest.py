import pytest

from market.catalogue import gpu_models_load


@pytest.fixture
def seeded_catalogue():
    """Transactional tests start from flushed tables: put the catalogue back."""
    gpu_models_load()
