"""Where throttle counts live: one cache every process shares (Redis when there is
one), and an unreachable cache lets requests through rather than failing them."""

import os
import subprocess
import sys
import uuid

import pytest
from django.test import RequestFactory

from accounts.throttles import SignUpThrottle
from config import settings as project_settings
from market.models import Order
from tests.market.test_api import order_payload
from tests.support import free_port


def test_the_cache_is_redis_when_there_is_one_and_local_memory_without():
    backend = project_settings.CACHES["default"]["BACKEND"]
    if project_settings.REDIS_URL:
        assert backend == "core.redis_cache.RedisCache"  # Django's, its redis-py client kept
        assert project_settings.CACHES["default"]["LOCATION"] == project_settings.REDIS_URL
    else:
        assert backend == "django.core.cache.backends.locmem.LocMemCache"


@pytest.mark.skipif(not project_settings.REDIS_URL, reason="needs Redis (REDIS_URL)")
def test_the_redis_cache_reuses_one_client_and_still_reads_and_writes():
    from django.core.cache import cache

    key = f"reuse-{uuid.uuid4().hex}"
    cache.set(key, {"a": 1}, timeout=30)
    assert cache.get(key) == {"a": 1}
    assert cache.add(f"{key}-n", 1, timeout=30)
    assert cache.incr(f"{key}-n") == 2
    # one redis.Redis per connection pool, not a new one (and its callback table) per call
    client = cache._cache.get_client(write=True)
    assert cache._cache.get_client(write=True) is client
    assert cache._cache.get_client() is cache._cache.get_client()


@pytest.mark.integration
@pytest.mark.skipif(not project_settings.REDIS_URL, reason="needs Redis (REDIS_URL)")
def test_two_processes_count_against_one_limit_through_redis(settings):
    # given: an address that signed up 10 times (the hourly rate) through another process
    address = f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
    script = (
        "import sys, django; django.setup()\n"
        "from django.test import RequestFactory\n"
        "from accounts.throttles import SignUpThrottle\n"
        "request = RequestFactory().post('/signup/', REMOTE_ADDR=sys.argv[1])\n"
        "print('allowed', sum(SignUpThrottle().allow_request(request, None) for _ in range(10)))\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, address],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert other.stdout.strip().splitlines()[-1] == "allowed 10"

    # when: this process, with the cache as configured for production, sees the next one
    settings.CACHES = project_settings.CACHES
    request = RequestFactory().post("/signup/", REMOTE_ADDR=address)

    # then: it is over the limit already
    assert SignUpThrottle().allow_request(request, None) is False


@pytest.mark.django_db
def test_an_unreachable_cache_does_not_fail_an_order(settings, buyer_client, caplog):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        }
    }

    response = buyer_client.post("/api/v1/orders/", order_payload(), format="json")

    assert response.status_code == 201
    assert Order.objects.count() == 1
    assert "throttle cache unavailable; orders not limited" in caplog.text
