import logging
import time

import numpy as np
import pytest
import redis

from clinlinker.encode.cache import CachedEncoder, LRUCache, RedisCache, cache_key, make_cache
from tests.servers import free_port


class CountingEncoder:
    """Wraps the tiny encoder and records what actually reached the model."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.seen: list[str] = []

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode(self, texts, **kwargs):
        self.seen.extend(texts)
        return self.encoder.encode(texts, **kwargs)


def test_key_depends_on_fingerprint_and_exact_text():
    assert cache_key("fp1", "dolor") == cache_key("fp1", "dolor")
    assert len({cache_key("fp1", "dolor"), cache_key("fp2", "dolor"), cache_key("fp1", "Dolor"),
                cache_key("fp1", "dolor ")}) == 4


def test_lru_evicts_least_recently_used():
    cache = LRUCache(max_items=2)
    cache.set_many({"a": b"1", "b": b"2"})
    cache.get_many(["a"])
    cache.set_many({"c": b"3"})
    assert cache.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
    assert (cache.stats.hits, cache.stats.misses) == (3, 1)


def test_make_cache_picks_redis_only_with_a_url(redis_url):
    assert isinstance(make_cache(None), LRUCache)
    assert isinstance(make_cache(redis_url), RedisCache)


def test_cached_encoder_encodes_each_text_once(tiny_encoder):
    counting = CountingEncoder(tiny_encoder)
    cached = CachedEncoder(counting, LRUCache())
    first = cached.encode(["tos", "fiebre", "tos"])
    second = cached.encode(["fiebre", "disnea"])
    assert counting.seen == ["tos", "fiebre", "disnea"]
    np.testing.assert_array_equal(first[1], second[0])
    np.testing.assert_allclose(first, tiny_encoder.encode(["tos", "fiebre", "tos"]), atol=1e-6)


def test_redis_cache_stores_raw_float32_with_prefix_and_ttl(tiny_encoder, redis_url):
    cache = RedisCache(redis_url, prefix="test:emb:", ttl=600)
    counting = CountingEncoder(tiny_encoder)
    cached = CachedEncoder(counting, cache)
    vectors = cached.encode(["cefalea", "mareo"])
    client = redis.Redis.from_url(redis_url)
    key = "test:emb:" + cache_key(tiny_encoder.fingerprint, "cefalea")
    raw = client.get(key)
    np.testing.assert_array_equal(np.frombuffer(raw, dtype=np.float32), vectors[0])
    assert 0 < client.ttl(key) <= 600
    again = CachedEncoder(CountingEncoder(tiny_encoder), RedisCache(redis_url, prefix="test:emb:"))
    np.testing.assert_array_equal(again.encode(["mareo", "cefalea"]), vectors[::-1])
    assert again.encoder.seen == []
    assert again.cache.state()["hits"] == 2


def test_unreachable_redis_degrades_with_one_warning(tiny_encoder, caplog):
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    cached = CachedEncoder(tiny_encoder, cache)
    with caplog.at_level(logging.WARNING, logger="clinlinker.encode.cache"):
        first = cached.encode(["tos", "fiebre"])
        second = cached.encode(["tos"])
    np.testing.assert_allclose(first, tiny_encoder.encode(["tos", "fiebre"]), atol=1e-6)
    np.testing.assert_allclose(second[0], first[0], atol=1e-6)
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1
    state = cache.state()
    assert state["available"] is False and "ConnectionError" in state["last_error"]


@pytest.fixture
def own_redis(tmp_path):
    """A private redis-server that a test may kill and restart (on the same port)."""
    from tests.servers import OwnRedis

    server = OwnRedis(tmp_path)
    state = {"proc": server.start(), "port": server.port, "start": server.start}
    yield state
    server.stop()


def test_redis_failing_mid_run_then_coming_back(tiny_encoder, own_redis, caplog):
    cache = RedisCache(f"redis://127.0.0.1:{own_redis['port']}/0", timeout=0.3, retry_after=0.2)
    cached = CachedEncoder(tiny_encoder, cache)
    expected = tiny_encoder.encode(["tos", "disnea"])
    np.testing.assert_allclose(cached.encode(["tos"]), expected[:1], atol=1e-6)
    assert cache.available
    own_redis["proc"].kill()
    own_redis["proc"].wait()
    with caplog.at_level(logging.WARNING, logger="clinlinker.encode.cache"):
        np.testing.assert_allclose(cached.encode(["tos", "disnea"]), expected, atol=1e-6)  # server gone
        np.testing.assert_allclose(cached.encode(["disnea"]), expected[1:], atol=1e-6)
    assert not cache.available
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
    own_redis["proc"] = own_redis["start"]()
    time.sleep(0.25)
    cached.encode(["disnea"])  # retried after retry_after: reconnects and stores again
    assert cache.available
    assert redis.Redis(port=own_redis["port"]).exists(cache.prefix + cache_key(tiny_encoder.fingerprint, "disnea"))
    assert any("is back" in r.getMessage() for r in caplog.records)


def test_reranker_scores_outlive_a_restart_in_redis_and_an_outage_only_slows_them(tiny_cross_encoder, own_redis,
                                                                                    caplog):
    """The re-ranker's scores in a real Redis: a second process (a new re-ranker and client) reads none again;
    with the server killed it reads them all, right, and says so once; when it is back it stores again."""
    from clinlinker.rerank.cross_encoder import CrossEncoderReranker

    url = f"redis://127.0.0.1:{own_redis['port']}/0"
    pairs = [("dolor abdominal", "dolor"), ("dolor abdominal", "abdomen agudo"), ("fiebre", "pirexia")]
    expected = CrossEncoderReranker(str(tiny_cross_encoder)).score(pairs)
    first = RedisCache(url, prefix="test:rr:")
    np.testing.assert_allclose(CrossEncoderReranker(str(tiny_cross_encoder), cache=first).score(pairs), expected,
                               atol=1e-5)
    assert first.stats.misses == 3
    keys = redis.Redis(port=own_redis["port"]).keys("test:rr:*")
    assert len(keys) == 3 and all(len(redis.Redis(port=own_redis["port"]).get(k)) == 4 for k in keys)
    second = RedisCache(url, prefix="test:rr:", timeout=0.3, retry_after=0.2)
    restarted = CrossEncoderReranker(str(tiny_cross_encoder), cache=second)
    assert restarted.score(pairs).tolist() == CrossEncoderReranker(str(tiny_cross_encoder), cache=first).score(
        pairs).tolist()
    assert (second.stats.hits, second.stats.misses) == (3, 0)
    own_redis["proc"].kill()
    own_redis["proc"].wait()
    with caplog.at_level(logging.WARNING, logger="clinlinker.encode.cache"):
        np.testing.assert_allclose(restarted.score(pairs + [("tos", "tos seca")])[:3], expected, atol=1e-5)
    assert not second.available
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
    own_redis["proc"] = own_redis["start"]()  # an empty server (no persistence): the scores are read and stored
    time.sleep(0.25)
    restarted.score([("tos", "tos seca")])
    assert second.available and len(redis.Redis(port=own_redis["port"]).keys("test:rr:*")) == 1
