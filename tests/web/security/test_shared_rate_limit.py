"""The entry rate limit holds across server processes when REDIS_URL is set: two processes (this one and a
child) counting requests of one client IP share one count in Redis, so the limit is the limit, not the limit
times the number of processes. Skipped when Redis is unreachable."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

CHILD = """
import django, sys
django.setup()
from django.test import RequestFactory
from webapp.crowd.ratelimit import over_limit
req = RequestFactory().get("/p/x/", REMOTE_ADDR=sys.argv[1])
print(sum(over_limit(req, "entry") for _ in range(int(sys.argv[2]))))
"""


def _redis_or_skip():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is unreachable at {REDIS_URL} ({exc})")


@pytest.fixture
def redis_cache(settings):
    _redis_or_skip()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": REDIS_URL, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}
    settings.CROWD_RATE_LIMIT, settings.CROWD_RATE_WINDOW = 10, 60
    yield settings.CACHES["default"]["KEY_PREFIX"]


def test_settings_use_redis_when_redis_url_is_set():
    env = {**os.environ, "REDIS_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    env.pop("CACHE_KEY_PREFIX", None)
    out = subprocess.run([sys.executable, "-c", "from django.conf import settings; "
                          "print(settings.CACHES['default']['BACKEND'])"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "django.core.cache.backends.redis.RedisCache"
    env.pop("REDIS_URL")
    out = subprocess.run([sys.executable, "-c", "from django.conf import settings; "
                          "print(settings.CACHES['default']['BACKEND'])"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "django.core.cache.backends.locmem.LocMemCache"


def test_two_processes_share_one_count(redis_cache):
    from django.test import RequestFactory

    from webapp.crowd.ratelimit import over_limit

    ip = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    req = RequestFactory().get("/p/x/", REMOTE_ADDR=ip)
    assert not any(over_limit(req, "entry") for _ in range(6))  # 6 of the 10 here
    env = {**os.environ, "REDIS_URL": REDIS_URL, "CACHE_KEY_PREFIX": redis_cache,
           "DJANGO_SETTINGS_MODULE": "webapp.settings", "CROWD_RATE_LIMIT": "10", "CROWD_RATE_WINDOW": "60"}
    refused = subprocess.run([sys.executable, "-c", CHILD, ip, "6"], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
    # the other process sees the 6 already counted: its 5th and 6th requests are over the limit of 10
    assert refused == "2", refused
    assert over_limit(req, "entry")  # and this process sees the other's count
    other = RequestFactory().get("/p/x/", REMOTE_ADDR="198.51.100.7")
    assert not over_limit(other, "entry")  # per client IP
