"""Small facts every process must agree on: "seen this before?" and "how many today?".

On Redis (``REDIS_URL``) when configured, so every web process and worker shares them; otherwise in
this process, which is then the only one (``make run``, the SQLite test suite).
- ``SeenOnce.first_time(key, ttl)``: True the first time ``key`` is offered within ``ttl`` seconds (the
  server URL's nonces and message ids, for the timestamp window);
- ``DailyCounter.increment(key)``: how many times ``key`` was counted today, this one included (forced
  access-token refreshes, which WeChat rations per app and day);
- ``ImageCache.get(key)`` / ``.put(key, image, ttl)``: images WeChat made once and would make the same
  again (mini-program codes), so that a repeated download spends none of WeChat's quota.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Protocol

import redis as redis_lib

PREFIX = "mp_backend"
CHINA = timezone(timedelta(hours=8))  # WeChat's quotas reset at midnight in Beijing


def today() -> str:
    return datetime.now(CHINA).strftime("%Y%m%d")


class SeenOnce(Protocol):
    def first_time(self, key: str, ttl: int) -> bool: ...


class DailyCounter(Protocol):
    def increment(self, key: str) -> int: ...


class ImageCache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, image: bytes, ttl: int) -> None: ...


class RedisSeenOnce:
    def __init__(self, client: redis_lib.Redis) -> None:
        self._client = client

    def first_time(self, key: str, ttl: int) -> bool:
        return bool(self._client.set(f"{PREFIX}:seen:{key}", 1, nx=True, ex=ttl))


class MemorySeenOnce:
    def __init__(self) -> None:
        self._expires_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, key: str, ttl: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._expires_at) > 10_000:
                self._expires_at = {k: t for k, t in self._expires_at.items() if t > now}
            if self._expires_at.get(key, 0.0) > now:
                return False
            self._expires_at[key] = now + ttl
            return True


class RedisDailyCounter:
    def __init__(self, client: redis_lib.Redis) -> None:
        self._client = client

    def increment(self, key: str) -> int:
        name = f"{PREFIX}:daily:{today()}:{key}"
        pipe = self._client.pipeline()
        pipe.incr(name)
        pipe.expire(name, 2 * 24 * 3600)
        count, _ = pipe.execute()
        return int(count)


class MemoryDailyCounter:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def increment(self, key: str) -> int:
        with self._lock:
            day = today()
            self._counts = {k: v for k, v in self._counts.items() if k[0] == day}
            self._counts[(day, key)] = self._counts.get((day, key), 0) + 1
            return self._counts[(day, key)]

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


class RedisImageCache:
    def __init__(self, client: redis_lib.Redis) -> None:
        self._client = client

    def get(self, key: str) -> bytes | None:
        value = self._client.get(f"{PREFIX}:image:{key}")
        return bytes(value) if value is not None else None  # type: ignore[arg-type]

    def put(self, key: str, image: bytes, ttl: int) -> None:
        self._client.set(f"{PREFIX}:image:{key}", image, ex=ttl)


class MemoryImageCache:
    """The most recently used ``max_entries`` images of this process (a few hundred KB each at most)."""

    def __init__(self, max_entries: int = 64) -> None:
        self._images: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            found = self._images.get(key)
            if found is None or found[1] <= time.monotonic():
                self._images.pop(key, None)
                return None
            self._images.move_to_end(key)
            return found[0]

    def put(self, key: str, image: bytes, ttl: int) -> None:
        with self._lock:
            self._images[key] = (image, time.monotonic() + ttl)
            self._images.move_to_end(key)
            while len(self._images) > self._max_entries:
                self._images.popitem(last=False)


def image_cache_for(redis_url: str | None) -> ImageCache:
    """Redis when configured (every process and host shares one copy); this process's memory otherwise."""
    if redis_url:
        return RedisImageCache(redis_lib.Redis.from_url(redis_url))
    return MemoryImageCache()


# Like the token storage: without Redis, every app in the process counts together (one appid, one quota).
PROCESS_DAILY_COUNTER = MemoryDailyCounter()


def shared_for(redis_url: str | None) -> tuple[SeenOnce, DailyCounter]:
    if redis_url:
        client = redis_lib.Redis.from_url(redis_url)
        return RedisSeenOnce(client), RedisDailyCounter(client)
    return MemorySeenOnce(), PROCESS_DAILY_COUNTER
