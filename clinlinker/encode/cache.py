"""Embedding caches: Redis when REDIS_URL is set, an in-process LRU otherwise.

A cache never makes a request fail: when Redis is unreachable or fails mid-run the
cache warns once, answers "miss" and stores nothing, and tries Redis again after
`retry_after` seconds.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)


def cache_key(fingerprint: str, text: str) -> str:
    """Key of one mention embedding: hash of the encoder fingerprint (model, weights, pooling,
    max_length) and the exact text."""
    return hashlib.sha256(f"{fingerprint}\x00{text}".encode("utf-8")).hexdigest()


class CacheStats:
    def __init__(self):
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._lock = threading.Lock()

    def add(self, hits: int, misses: int, errors: int = 0) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses
            self.errors += errors


class LRUCache:
    """The embedded default: a bounded, thread-safe, in-process cache."""

    backend = "memory"

    def __init__(self, max_items: int = 100_000):
        self.max_items = max_items
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        out = []
        with self._lock:
            for key in keys:
                value = self._items.get(key)
                if value is not None:
                    self._items.move_to_end(key)
                out.append(value)
        hits = sum(v is not None for v in out)
        self.stats.add(hits, len(keys) - hits)
        return out

    def set_many(self, items: dict[str, bytes]) -> None:
        with self._lock:
            for key, value in items.items():
                self._items[key] = value
                self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def state(self) -> dict:
        return {"backend": self.backend, "available": True, "items": len(self._items),
                "max_items": self.max_items, "hits": self.stats.hits, "misses": self.stats.misses}


class RedisCache:
    """Mention embeddings in Redis: pipelined MGET / SET(EX), raw float32 bytes as values."""

    backend = "redis"

    def __init__(self, url: str, *, prefix: str = "clinlinker:emb:", ttl: int | None = None,
                 timeout: float = 0.25, retry_after: float = 30.0):
        import redis

        self.url = url
        self.prefix = prefix
        self.ttl = ttl or None
        self.retry_after = retry_after
        self.stats = CacheStats()
        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._down_since: float | None = None
        self._last_error = ""
        self._lock = threading.Lock()

    def _usable(self) -> bool:
        with self._lock:
            if self._down_since is None:
                return True
            if time.monotonic() - self._down_since >= self.retry_after:
                return True  # try again; _failed() re-arms the timer if it is still down
            return False

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            first = self._down_since is None
            self._down_since = time.monotonic()
            self._last_error = f"{type(exc).__name__}: {exc}"
        self.stats.add(0, 0, 1)
        if first:
            log.warning("Redis cache at %s unavailable (%s); continuing without the cache, retrying every %.0f s",
                        _redact(self.url), self._last_error, self.retry_after)

    def _recovered(self) -> None:
        with self._lock:
            was_down = self._down_since is not None
            self._down_since = None
        if was_down:
            log.warning("Redis cache at %s is back", _redact(self.url))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        if not self._usable():
            self.stats.add(0, len(keys))
            return [None] * len(keys)
        try:
            values = self._client.mget([self.prefix + k for k in keys])
        except Exception as exc:  # any client or connection error: degrade, never fail the request
            self._failed(exc)
            self.stats.add(0, len(keys))
            return [None] * len(keys)
        self._recovered()
        hits = sum(v is not None for v in values)
        self.stats.add(hits, len(keys) - hits)
        return list(values)

    def set_many(self, items: dict[str, bytes]) -> None:
        if not items or not self._usable():
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(self.prefix + key, value, ex=self.ttl)
                pipe.execute()
        except Exception as exc:
            self._failed(exc)
            return
        self._recovered()

    @property
    def available(self) -> bool:
        return self._down_since is None

    def state(self) -> dict:
        return {"backend": self.backend, "url": _redact(self.url), "available": self.available,
                "last_error": None if self.available else self._last_error, "prefix": self.prefix,
                "ttl": self.ttl, "hits": self.stats.hits, "misses": self.stats.misses, "errors": self.stats.errors}


def _redact(url: str) -> str:
    """Hide a password in redis://user:password@host URLs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def make_cache(redis_url: str | None = None, *, prefix: str = "clinlinker:emb:", ttl: int | None = None,
               max_items: int = 100_000):
    """RedisCache when a URL is given, else the in-process LRU."""
    if redis_url:
        return RedisCache(redis_url, prefix=prefix, ttl=ttl)
    return LRUCache(max_items=max_items)


class CachedEncoder:
    """Wrap a DenseEncoder: look mentions up in the cache, encode only the misses, store them."""

    def __init__(self, encoder, cache):
        self.encoder = encoder
        self.cache = cache

    def __getattr__(self, name):  # name, dim, fingerprint, pooling, describe ... of the wrapped encoder
        return getattr(self.encoder, name)

    def encode(self, texts: Sequence[str], **kwargs) -> np.ndarray:
        return through_cache(self.cache, self.encoder.fingerprint, list(texts),
                             lambda missing: self.encoder.encode(missing, **kwargs), self.encoder.dim)


def through_cache(cache, fingerprint: str, items: Sequence, compute, width: int, text=lambda item: item) -> np.ndarray:
    """float32 rows of `width` values, one per item: what the cache holds under cache_key(fingerprint, text(item)),
    the rest computed once each (`compute(missing items)`: their rows, in order) and stored."""
    keys = {item: cache_key(fingerprint, text(item)) for item in dict.fromkeys(items)}
    rows: dict = {}
    for item, value in zip(keys, cache.get_many(list(keys.values()))):
        if value is not None and len(value) == 4 * width:
            rows[item] = np.frombuffer(value, dtype=np.float32)
    missing = [item for item in keys if item not in rows]
    if missing:
        fresh = np.asarray(compute(missing), dtype=np.float32).reshape(len(missing), width)
        cache.set_many({keys[item]: fresh[i].tobytes() for i, item in enumerate(missing)})
        rows.update(zip(missing, fresh))
    out = np.empty((len(items), width), dtype=np.float32)
    for i, item in enumerate(items):
        out[i] = rows[item]
    return out
