"""What every process must agree on (wechat/shared.py): "seen before?" and "how many today?", on
Redis when configured (every process shares them) and in process otherwise."""

from __future__ import annotations

import os
import secrets

import pytest
import redis

from mp_backend.wechat.shared import MemoryDailyCounter, MemorySeenOnce, shared_for


@pytest.fixture(params=["memory", "redis"])
def backends(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Two handles on one store, as two processes would hold them."""
    if request.param == "memory":
        seen, counter = MemorySeenOnce(), MemoryDailyCounter()
        return (seen, counter), (seen, counter)
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set")
    redis.Redis.from_url(url).flushdb()
    return shared_for(url), shared_for(url)


def test_a_key_is_new_once_within_its_ttl(backends) -> None:  # type: ignore[no-untyped-def]
    (seen_here, _), (seen_there, _) = backends
    key = f"nonce:{secrets.token_hex(4)}"
    assert seen_here.first_time(key, 60) is True
    assert seen_there.first_time(key, 60) is False
    assert seen_here.first_time(key, 60) is False
    assert seen_there.first_time(key + "-other", 60) is True


def test_a_daily_count_is_shared(backends) -> None:  # type: ignore[no-untyped-def]
    (_, counter_here), (_, counter_there) = backends
    key = f"forced_refresh:{secrets.token_hex(4)}"
    assert [counter_here.increment(key), counter_there.increment(key), counter_here.increment(key)] == [1, 2, 3]
    assert counter_there.increment(key + "-other-app") == 1


def test_a_kept_image_is_shared_and_lapses() -> None:
    import time

    from mp_backend.wechat.shared import MemoryImageCache, image_cache_for

    url = os.environ.get("TEST_REDIS_URL")
    memory = MemoryImageCache(max_entries=2)
    caches = [(memory, memory)] + ([(image_cache_for(url), image_cache_for(url))] if url else [])
    for here, there in caches:
        key = f"wxacode:{secrets.token_hex(4)}"
        assert here.get(key) is None
        here.put(key, b"\x89PNG one", 60)
        assert there.get(key) == b"\x89PNG one"
        here.put(key + "-brief", b"two", 1)
        time.sleep(1.1)
        assert there.get(key + "-brief") is None
    # the memory cache keeps the most recently used images only
    memory.put("a", b"a", 60)
    memory.put("b", b"b", 60)
    memory.get("a")
    memory.put("c", b"c", 60)
    assert (memory.get("a"), memory.get("b"), memory.get("c")) == (b"a", None, b"c")
