"""Where access tokens live, and the lock that lets only one process refresh one at a time.

WeChat gives each app one access token at a time (about 2 h); every web process and RQ worker must
share it, or they keep invalidating each other's. With Redis the token sits in wechatpy's own
``RedisStorage`` and a Redis lock serialises refreshes across hosts; without Redis (``make run``, the
SQLite test suite) one process holds everything, so a dict and a ``threading.Lock`` do the same job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import redis as redis_lib
from wechatpy.session import SessionStorage
from wechatpy.session.memorystorage import MemoryStorage
from wechatpy.session.redisstorage import RedisStorage

log = logging.getLogger(__name__)

STORAGE_PREFIX = "wechatpy"
# How long a refresher may hold the lock before Redis frees it for others: longer than one token
# request (5 s timeout, twice when a forced refresh follows), short enough that a crashed worker
# does not stall everyone for long.
LOCK_TTL_SECONDS = 15.0
# How long a caller waits for another process's refresh before giving up with wechat_unavailable.
LOCK_WAIT_SECONDS = 12.0


class ExpiringMemoryStorage(MemoryStorage):
    """wechatpy's MemoryStorage ignores ``ttl``; a token that outlives its expiry must disappear."""

    def __init__(self) -> None:
        super().__init__()
        self._expires_at: dict[str, float] = {}
        self._mutex = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        with self._mutex:
            deadline = self._expires_at.get(key)
            if deadline is not None and time.monotonic() >= deadline:
                self._data.pop(key, None)
                self._expires_at.pop(key, None)
            return self._data.get(key, default)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if value is None:
            return
        with self._mutex:
            self._data[key] = value
            if ttl:
                self._expires_at[key] = time.monotonic() + ttl
            else:
                self._expires_at.pop(key, None)

    def delete(self, key: str) -> None:
        with self._mutex:
            self._data.pop(key, None)
            self._expires_at.pop(key, None)

    def clear(self) -> None:
        with self._mutex:
            self._data.clear()
            self._expires_at.clear()


class TokenLock(Protocol):
    """``with lock(name) as acquired:``; ``acquired`` is False when the wait timed out."""

    def __call__(self, name: str) -> Any: ...


class ThreadTokenLock:
    """One lock per name for this process (several apps in one process share it, like the storage)."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def __call__(self, name: str) -> Iterator[bool]:
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        acquired = lock.acquire(timeout=LOCK_WAIT_SECONDS)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()


class RedisTokenLock:
    """redis-py's Lock: ``SET name token NX PX ttl`` to take it, a token-checked delete to free it."""

    def __init__(self, client: redis_lib.Redis) -> None:
        self._client = client

    @contextmanager
    def __call__(self, name: str) -> Iterator[bool]:
        lock = self._client.lock(
            f"{STORAGE_PREFIX}:lock:{name}", timeout=LOCK_TTL_SECONDS, blocking_timeout=LOCK_WAIT_SECONDS, sleep=0.05
        )
        acquired = bool(lock.acquire())
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    lock.release()
                except redis_lib.exceptions.LockError:
                    # Held past its TTL, so Redis already let someone else in; nothing left to free.
                    log.warning("token lock %s expired before release", name)


# Without Redis every app in the process shares these, so two create_app() in one process (tests, the
# dev server's reloader child) still see one token per appid.
_PROCESS_STORAGE = ExpiringMemoryStorage()
_PROCESS_LOCK = ThreadTokenLock()


def storage_for(redis_url: str | None) -> tuple[SessionStorage, TokenLock]:
    """The token storage and refresh lock for this configuration."""
    if redis_url:
        client = redis_lib.Redis.from_url(redis_url)
        return RedisStorage(client, prefix=STORAGE_PREFIX), RedisTokenLock(client)
    return _PROCESS_STORAGE, _PROCESS_LOCK


def clear_process_storage() -> None:
    """Forget every token (and forced-refresh count) held in this process: tests start from zero."""
    from .shared import PROCESS_DAILY_COUNTER

    _PROCESS_STORAGE.clear()
    PROCESS_DAILY_COUNTER.clear()
