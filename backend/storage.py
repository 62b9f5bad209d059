"""Durable state of the backend: the candidates shown per document, the event log, accepted links.

SQLite (in CLINLINKER_DATA_DIR) always works and is shared by the processes of one host.
With REDIS_URL, documents and events go to Redis (shared by several hosts); when Redis fails
they fall back to SQLite, so an event Label Studio sent is never lost.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

from backend.regions import UNTOUCHED

log = logging.getLogger(__name__)


def reviewed(origin: str | None, untouched: bool = False) -> bool:
    """Whether an accepted link teaches the assistant: a code the coder changed or gave (or of unknown origin);
    a pre-annotation left untouched only when `untouched` (CLINLINKER_LEARN_UNTOUCHED)."""
    return untouched or origin != UNTOUCHED

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (doc TEXT NOT NULL, node TEXT NOT NULL, payload TEXT NOT NULL,
                                      updated REAL NOT NULL, PRIMARY KEY (doc, node));
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, received REAL NOT NULL,
                                   action TEXT NOT NULL, body TEXT NOT NULL, claimed REAL, done REAL, error TEXT);
CREATE TABLE IF NOT EXISTS accepted_links (project TEXT NOT NULL, task TEXT NOT NULL, region TEXT NOT NULL,
                                   annotation TEXT, filename TEXT, label TEXT, start INTEGER, end INTEGER,
                                   span TEXT, code TEXT, semantic_rel TEXT, updated REAL NOT NULL,
                                   origin TEXT NOT NULL DEFAULT '', PRIMARY KEY (project, task, region));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SQLiteStore:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(accepted_links)")}
            if "origin" not in columns:  # data directories written before origins were kept
                conn.execute("ALTER TABLE accepted_links ADD COLUMN origin TEXT NOT NULL DEFAULT ''")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    # documents
    def put_document(self, doc: str, mentions: list[dict]) -> None:
        now = time.time()
        self._conn().executemany(
            "INSERT OR REPLACE INTO documents (doc, node, payload, updated) VALUES (?, ?, ?, ?)",
            [(doc, m["node"], json.dumps(m, ensure_ascii=False), now) for m in mentions])

    def get_document(self, doc: str) -> list[dict]:
        rows = self._conn().execute("SELECT payload FROM documents WHERE doc = ?", (doc,)).fetchall()
        return [json.loads(payload) for (payload,) in rows]

    # events
    def append_event(self, action: str, body: dict) -> str:
        cur = self._conn().execute("INSERT INTO events (received, action, body) VALUES (?, ?, ?)",
                                   (time.time(), action, json.dumps(body, ensure_ascii=False)))
        return f"sqlite:{cur.lastrowid}"

    def claim_events(self, limit: int = 100, stale_after: float = 300.0) -> list[tuple[str, str, dict]]:
        """Claim unprocessed events (or ones claimed by a worker that died long ago)."""
        conn = self._conn()
        now = time.time()
        rows = conn.execute("SELECT id, action, body FROM events WHERE done IS NULL AND (claimed IS NULL OR "
                            "claimed < ?) ORDER BY id LIMIT ?", (now - stale_after, limit)).fetchall()
        claimed = []
        for event_id, action, body in rows:
            cur = conn.execute("UPDATE events SET claimed = ? WHERE id = ? AND done IS NULL AND "
                               "(claimed IS NULL OR claimed < ?)", (now, event_id, now - stale_after))
            if cur.rowcount == 1:
                claimed.append((f"sqlite:{event_id}", action, json.loads(body)))
        return claimed

    def finish_event(self, event_id: str, error: str | None = None, action: str | None = None) -> None:
        self._conn().execute("UPDATE events SET done = ?, error = ? WHERE id = ?",
                             (time.time(), error, int(event_id.split(":", 1)[1])))

    def event_counts(self) -> dict:
        rows = self._conn().execute("SELECT action, COUNT(*), SUM(done IS NOT NULL), SUM(error IS NOT NULL) "
                                    "FROM events GROUP BY action").fetchall()
        return {action: {"received": n, "processed": int(done or 0), "failed": int(failed or 0)}
                for action, n, done, failed in rows}

    # accepted links
    def replace_links(self, project: str, task: str, annotation: str | None, links: list[dict]) -> None:
        conn = self._conn()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM accepted_links WHERE project = ? AND task = ?", (project, task))
            conn.executemany(
                "INSERT INTO accepted_links (project, task, region, annotation, filename, label, start, end, span, "
                "code, semantic_rel, updated, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(project, task, link["region"], annotation, link["filename"], link["label"], link["start"],
                  link["end"], link["span"], link["code"], link["semantic_rel"], now, link.get("origin") or "")
                 for link in links])
            self._bump(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def delete_links(self, project: str, task: str, annotation: str | None = None) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if annotation is None:
                conn.execute("DELETE FROM accepted_links WHERE project = ? AND task = ?", (project, task))
            else:
                conn.execute("DELETE FROM accepted_links WHERE project = ? AND task = ? AND annotation = ?",
                             (project, task, annotation))
            self._bump(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _bump(conn) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('links_version', '1') ON CONFLICT(key) DO UPDATE "
                     "SET value = CAST(value AS INTEGER) + 1")

    def links_version(self) -> str:
        """Changes whenever the accepted links change (what the learned-terms layer is rebuilt from)."""
        return "sqlite:" + (self.get_meta("links_version") or "0")

    def learned_pairs(self, untouched: bool = False) -> list[tuple[str, str]]:
        """(mention, code) of the accepted links; untouched pre-annotations only when `untouched`."""
        return [(span, code) for span, code, origin in self._conn().execute(
            "SELECT span, code, origin FROM accepted_links ORDER BY project, task, region").fetchall()
            if reviewed(origin, untouched)]

    # small shared facts (the serving index after a fine-tuning, the last training's outcome)
    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._conn().execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                             "SET value = excluded.value", (key, value))

    def accepted_links(self) -> list[dict]:
        cur = self._conn().execute("SELECT * FROM accepted_links ORDER BY project, filename, start")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def accepted_count(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM accepted_links").fetchone()[0]


class RedisStore:
    """Documents in Redis hashes, events in a Redis stream read by a consumer group; SQLite as fallback."""

    GROUP = "clinlinker-workers"

    def __init__(self, url: str, fallback: SQLiteStore, prefix: str = "clinlinker:", consumer: str = "worker"):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.fallback = fallback
        self.prefix = prefix
        self.stream = prefix + "events"
        self.consumer = consumer
        self._warned = False
        self._group_ready = False
        self._count: tuple[str, int] | None = None  # (links version, accepted links)

    def _failed(self, what: str, exc: Exception) -> None:
        if not self._warned:
            log.warning("Redis failed while %s (%s: %s); using the SQLite store at %s", what, type(exc).__name__,
                        exc, self.fallback.path)
            self._warned = True

    def put_document(self, doc: str, mentions: list[dict]) -> None:
        try:
            self.client.hset(self.prefix + "doc:" + doc,
                             mapping={m["node"]: json.dumps(m, ensure_ascii=False) for m in mentions})
            self._warned = False
        except Exception as exc:  # noqa: BLE001 - Redis is optional: degrade
            self._failed("storing candidates", exc)
            self.fallback.put_document(doc, mentions)

    def get_document(self, doc: str) -> list[dict]:
        try:
            found = [json.loads(v) for v in self.client.hgetall(self.prefix + "doc:" + doc).values()]
        except Exception as exc:  # noqa: BLE001
            self._failed("reading candidates", exc)
            found = []
        return found or self.fallback.get_document(doc)

    def append_event(self, action: str, body: dict) -> str:
        try:
            pipe = self.client.pipeline()
            pipe.xadd(self.stream, {"action": action, "body": json.dumps(body, ensure_ascii=False)})
            pipe.hincrby(self.prefix + "event_counts", f"{action}|received", 1)
            return "redis:" + pipe.execute()[0].decode()
        except Exception as exc:  # noqa: BLE001
            self._failed("recording an event", exc)
            return self.fallback.append_event(action, body)

    def claim_events(self, limit: int = 100, stale_after: float = 300.0) -> list[tuple[str, str, dict]]:
        events = self.fallback.claim_events(limit, stale_after)
        try:
            if not self._group_ready:
                try:
                    self.client.xgroup_create(self.stream, self.GROUP, id="0", mkstream=True)
                except Exception as exc:  # noqa: BLE001 - BUSYGROUP: it exists
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._group_ready = True
            # Entries claimed long ago by a consumer that died, then new ones.
            stale = self.client.xautoclaim(self.stream, self.GROUP, self.consumer, int(stale_after * 1000),
                                           start_id="0-0", count=limit)
            entries = list(stale[1]) if stale else []
            if not entries:
                reply = self.client.xreadgroup(self.GROUP, self.consumer, {self.stream: ">"}, count=limit)
                entries = [entry for _, batch in reply or [] for entry in batch]
            for entry_id, fields in entries:
                if fields:  # an entry deleted meanwhile has no fields
                    events.append(("redis:" + entry_id.decode(), fields[b"action"].decode(),
                                   json.loads(fields[b"body"])))
        except Exception as exc:  # noqa: BLE001
            self._failed("reading events", exc)
        return events

    def finish_event(self, event_id: str, error: str | None = None, action: str | None = None) -> None:
        if event_id.startswith("sqlite:"):
            return self.fallback.finish_event(event_id, error)
        try:
            pipe = self.client.pipeline()
            pipe.xack(self.stream, self.GROUP, event_id.split(":", 1)[1])
            pipe.hincrby(self.prefix + "event_counts", f"{action or 'unknown'}|processed", 1)
            if error:
                pipe.hincrby(self.prefix + "event_counts", f"{action or 'unknown'}|failed", 1)
            pipe.execute()
            if error:
                self.fallback.append_event("FAILED", {"event": event_id, "error": error})
        except Exception as exc:  # noqa: BLE001
            self._failed("acknowledging an event", exc)

    def event_counts(self) -> dict:
        counts = self.fallback.event_counts()  # events that fell back to SQLite
        try:
            for field, value in self.client.hgetall(self.prefix + "event_counts").items():
                action, kind = field.decode().rsplit("|", 1)
                entry = counts.setdefault(action, {"received": 0, "processed": 0, "failed": 0})
                entry[kind] = entry.get(kind, 0) + int(value)
            counts["redis_stream"] = {"length": self.client.xlen(self.stream)}
        except Exception:  # noqa: BLE001
            counts["redis_stream"] = {"length": None}
        return counts

    # accepted links: written to SQLite (this host's durable copy) and to Redis (shared by every process and
    # host); read from Redis, from SQLite while Redis is down.
    LINKS = "links"

    def replace_links(self, project: str, task: str, annotation: str | None, links: list[dict]) -> None:
        self.fallback.replace_links(project, task, annotation, links)
        rows = [{**link, "annotation": annotation} for link in links]
        try:
            pipe = self.client.pipeline()
            pipe.hset(self.prefix + self.LINKS, f"{project}\t{task}", json.dumps(rows, ensure_ascii=False))
            pipe.incr(self.prefix + self.LINKS + ":version")
            pipe.execute()
        except Exception as exc:  # noqa: BLE001
            self._failed("sharing accepted links", exc)

    def delete_links(self, project: str, task: str, annotation: str | None = None) -> None:
        self.fallback.delete_links(project, task, annotation)
        key, field = self.prefix + self.LINKS, f"{project}\t{task}"
        try:
            current = self.client.hget(key, field)
            keep = [r for r in (json.loads(current) if current else [])
                    if annotation is not None and str(r.get("annotation")) != str(annotation)]
            pipe = self.client.pipeline()
            if keep:
                pipe.hset(key, field, json.dumps(keep, ensure_ascii=False))
            else:
                pipe.hdel(key, field)
            pipe.incr(key + ":version")
            pipe.execute()
        except Exception as exc:  # noqa: BLE001
            self._failed("sharing accepted links", exc)

    def _shared_links(self) -> list[dict] | None:
        try:
            entries = self.client.hgetall(self.prefix + self.LINKS)
        except Exception as exc:  # noqa: BLE001
            self._failed("reading accepted links", exc)
            return None
        rows = []
        for field, value in sorted(entries.items()):
            project, task = field.decode().split("\t", 1)
            rows += [{"project": project, "task": task, **row} for row in json.loads(value)]
        return rows

    def accepted_links(self) -> list[dict]:
        rows = self._shared_links()
        return self.fallback.accepted_links() if rows is None else rows

    def accepted_count(self) -> int:
        """Counted again only when the links changed: /health and /metrics ask on every call."""
        version = self.links_version()
        if self._count is None or self._count[0] != version:
            self._count = (version, len(self.accepted_links()))
        return self._count[1]

    def learned_pairs(self, untouched: bool = False) -> list[tuple[str, str]]:
        rows = self._shared_links()
        if rows is None:
            return self.fallback.learned_pairs(untouched)
        return [(row["span"], row["code"]) for row in rows if reviewed(row.get("origin"), untouched)]

    def links_version(self) -> str:
        try:
            return "redis:" + (self.client.get(self.prefix + self.LINKS + ":version") or b"0").decode()
        except Exception as exc:  # noqa: BLE001
            self._failed("reading the accepted-links version", exc)
            return self.fallback.links_version()

    def get_meta(self, key: str) -> str | None:
        try:
            value = self.client.hget(self.prefix + "meta", key)
            if value is not None:
                return value.decode()
        except Exception as exc:  # noqa: BLE001
            self._failed("reading shared state", exc)
        return self.fallback.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self.fallback.set_meta(key, value)
        try:
            self.client.hset(self.prefix + "meta", key, value)
        except Exception as exc:  # noqa: BLE001
            self._failed("sharing state", exc)
