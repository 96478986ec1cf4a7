"""A fixed-window per-IP rate limit kept in the Django cache (settings CROWD_RATE_LIMIT / _WINDOW)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or behind a trusted proxy (CROWD_TRUSTED_PROXY_HOPS=N) the address N hops back in
    X-Forwarded-For (the one the outermost trusted proxy appended)."""
    hops = settings.CROWD_TRUSTED_PROXY_HOPS
    forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
    if hops > 0 and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "?")


def over_limit(request: HttpRequest, scope: str) -> bool:
    """Count this request; True when the client IP made more than the limit in the current window."""
    limit, window = settings.CROWD_RATE_LIMIT, settings.CROWD_RATE_WINDOW
    if limit <= 0:
        return False
    bucket = int(time.time() // window)
    key = f"rl:{scope}:{client_ip(request)}:{bucket}"
    if cache.add(key, 1, timeout=window + 1):
        return False
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window + 1)
        return False
    return count > limit
