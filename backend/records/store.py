"""The backend's store of record: every fact it keeps, in one database.

SQLite (a file in CLINLINKER_DATA_DIR) by default; PostgreSQL when CLINLINKER_DATABASE_URL names one (several
processes or hosts, the deployment Label Studio recommends for teams). One code path for both, through SQLAlchemy
Core. Redis is only a cache (embeddings): nothing lives only there.

Facts:
- `annotations`: one row per Label Studio annotation (project, task, annotation) with the version it was accepted
  at (Label Studio's `updated_at`), its state (accepted, cancelled, deleted: a tombstone) and the annotation as
  received. A version older than the stored one is stale and changes nothing; a repeat is a no-op; a deletion is
  final. Whatever the arrival order, the newest version wins.
- `links`: the accepted links derived from the stored annotations (rebuilt on every accepted version).
- `link_changes`: an ordered log of +1/-1 (mention, code) changes, so that every serving process updates its
  learned terms incrementally. Sequence numbers are handed out under a row lock (counter `link_seq`), so they
  commit in order and have no gaps; a process that finds a gap (the log was compacted) rebuilds from `links`.
- `candidate_lists`: the candidates shown per mention of a document (per project), read by the picker; they
  expire (CLINLINKER_CANDIDATES_TTL_DAYS).
- `projects`: what Label Studio's /setup said about a project (its address and access token, for a resync).
- `counters`: webhook and intake counts, shared by every process (so /metrics is the same whichever answers).
- `meta`: small shared facts (the published fine-tuned index, the last training's state, the schema version).

One file of ~540 lines: every transaction on the store, in one place to read how facts are written (the tables
and the migrations from earlier schemas are in backend/records/schema.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from sqlalchemy import Table, create_engine, delete, event, func, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from backend.labelstudio.regions import UNTOUCHED
from backend.records.schema import (DELETED_VERSION, SCHEMA_VERSION, annotations_t, candidates_t, changes_t, counters_t,
                            deleted_t, links_t, meta_t, metadata, migrate_tombstones, migrate_v1, projects_t,
                            version_of)

log = logging.getLogger(__name__)


def reviewed(origin: str | None, untouched: bool = False) -> bool:
    """Whether an accepted link teaches the assistant: a code the coder changed or gave (or of unknown origin);
    a pre-annotation left untouched only when `untouched` (CLINLINKER_LEARN_UNTOUCHED)."""
    return untouched or origin != UNTOUCHED


def insert_rows(conn, target, rows: list[dict], chunk: int = 500) -> None:
    """Rows written as multi-row INSERT statements, `chunk` rows each, never as an executemany: psycopg 3 runs an
    executemany as a pipeline, and a process stopped in the middle of one leaves its session waiting for the rest of
    the pipeline, where PostgreSQL's idle-in-transaction timeout is not armed, so its locks were held for as long as
    it was stopped (seen with two instances: the other's webhooks waited the whole 6 s). `target`: a table, or a
    function of the rows that makes the statement (an upsert)."""
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        conn.execute(target.insert().values(part) if isinstance(target, Table) else target(part))


@dataclass
class Applied:
    outcome: str  # applied | stale | duplicate | deleted | gone (deleted before)
    links: int = 0
    changes: int = 0


class Store:
    def __init__(self, url: str | None = None, data_dir: str | Path = "var", *, candidates_ttl_days: float = 30.0,
                 keep_changes: int = 200_000, idle_transaction_ms: int = 500, lock_timeout_ms: int = 100):
        self.data_dir = Path(data_dir).resolve()
        # PostgreSQL: a transaction of ours never waits between its statements for more than a few ms, so one idle
        # for half a second belongs to a stalled process; ended, it frees every write waiting behind it. A lock wait
        # gives up after lock_timeout_ms and the write is tried again (`_retrying`): waiting in the lock's queue
        # instead, a stalled process's own queued writes would each take the lock in turn and sit on it for
        # another idle_transaction_ms (measured: 1.0-1.6 s for the other instance's webhooks behind a frozen one)
        self.idle_transaction_ms, self.lock_timeout_ms = int(idle_transaction_ms), int(lock_timeout_ms)
        if not url:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{self.data_dir / 'backend.sqlite3'}"
        self.url = make_url(url)
        self.kind = "sqlite" if self.url.get_backend_name() == "sqlite" else self.url.get_backend_name()
        self.candidates_ttl = candidates_ttl_days * 86400
        self.keep_changes = keep_changes
        self.engine = self._engine()
        self._lock = threading.Lock()
        self._writer_thread_lock, self._writer_file, self._writer_pid = threading.Lock(), None, None
        self.migrate()

    # --- connection -----------------------------------------------------------------------------

    def _engine(self) -> Engine:
        if self.kind == "sqlite":
            engine = create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_connection, _record):
                dbapi_connection.isolation_level = None  # transactions are begun below, as SQLAlchemy's docs show
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA busy_timeout=30000")  # first: the next pragma may wait for a lock
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
                cursor.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn):
                # a writer takes the write lock at once: two writers never deadlock upgrading a read lock
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("write", False) else "BEGIN")

            return engine
        return create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                             connect_args=self._postgres_settings() if self.kind == "postgresql" else {})

    def _postgres_settings(self) -> dict:
        """No stalled or vanished peer holds a lock for long. The server ends a session that sits idle inside a
        transaction for `idle_transaction_ms` (a process frozen or cut off mid-write: its transaction was not
        acknowledged, so nothing accepted is lost, and its locks go), a lock wait is short (`lock_timeout`: the write
        is tried again), and TCP keepalives on both sides find a dead connection in ~25 s."""
        options = (f"-c idle_in_transaction_session_timeout={self.idle_transaction_ms} "
                   f"-c lock_timeout={self.lock_timeout_ms} "
                   "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3")
        return {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                "keepalives_count": 3, "options": options}

    @contextmanager
    def _write(self):
        with self._one_writer():
            with self.engine.connect() as conn:
                conn.info["write"] = True
                with conn.begin():
                    yield conn

    @contextmanager
    def _one_writer(self):
        """SQLite: one write transaction at a time across threads and processes, waiting on a file lock. SQLite's
        own wait for its write lock sleeps 1, 2, 5, 10 ... ms between tries whenever the lock was taken, however
        soon it is free again: with every /predict writing its candidate lists, those sleeps were the p99 of
        /predict and of the webhooks under load (bench/concurrency.py). A waiter here wakes when the lock is
        released."""
        if self.kind != "sqlite":
            yield
            return
        import fcntl

        with self._writer_thread_lock:
            if self._writer_file is None or self._writer_pid != os.getpid():  # a forked worker opens its own
                self._writer_file = open(Path(self.url.database).with_suffix(".write.lock"), "a")
                self._writer_pid = os.getpid()
            fcntl.flock(self._writer_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._writer_file, fcntl.LOCK_UN)

    @contextmanager
    def _read(self, snapshot: bool = False):
        with self.engine.connect() as conn:
            if snapshot and self.kind == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @property
    def location(self) -> str:
        """Where the facts are: the SQLite file's absolute path, or the database URL without its password."""
        if self.kind == "sqlite":
            return str(Path(self.url.database).resolve())
        return self.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()

    # --- schema ---------------------------------------------------------------------------------

    @contextmanager
    def _migration_lock(self):
        """One process at a time creates or migrates the schema (gunicorn's workers all start together)."""
        if self.kind == "sqlite":
            import fcntl

            with open(Path(self.url.database).with_suffix(".migrate.lock"), "w") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield
        elif self.kind == "postgresql":
            # autocommit: the session holding the lock is idle, not idle in a transaction, while the schema is made
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("SET lock_timeout = 0"))  # wait for another process's migration, however long
                conn.execute(text("SELECT pg_advisory_lock(4242424242)"))
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(4242424242)"))
                    conn.execute(text("RESET lock_timeout"))
        else:
            yield

    def migrate(self) -> None:
        """Create the tables; carry over a data directory written by an earlier version (SQLite, schema 1)."""
        with self._lock, self._migration_lock():
            legacy = self.kind == "sqlite" and "accepted_links" in inspect(self.engine).get_table_names()
            metadata.create_all(self.engine)

            def work():
                with self._write() as conn:
                    if conn.execute(select(counters_t.c.value).where(counters_t.c.name == "link_seq")).first() is None:
                        conn.execute(counters_t.insert().values(name="link_seq", value=0))
                    if legacy:
                        migrate_v1(self, conn)
                    if self._get_meta(conn, "schema_version") != SCHEMA_VERSION:
                        migrate_tombstones(self, conn)
                        self._set_meta(conn, "schema_version", SCHEMA_VERSION)
            self._retrying(work, budget=60.0)

    def take_legacy_events(self) -> list[tuple[str, dict]]:
        """Events schema 1 had not processed yet (replayed once by the backend on start)."""
        with self._write() as conn:
            raw = self._get_meta(conn, "legacy_pending_events")
            if raw is None:
                return []
            conn.execute(delete(meta_t).where(meta_t.c.key == "legacy_pending_events"))
        out = []
        for action, body in json.loads(raw):
            try:
                out.append((action, json.loads(body)))
            except ValueError:
                log.warning("a schema-1 event could not be read and was dropped: %r", body[:200])
        return out

    # --- counters and meta ----------------------------------------------------------------------

    def _incr(self, conn, name: str, by: int = 1) -> int:
        value = conn.execute(update(counters_t).where(counters_t.c.name == name)
                             .values(value=counters_t.c.value + by).returning(counters_t.c.value)).scalar()
        if value is None:
            conn.execute(counters_t.insert().values(name=name, value=by))
            return by
        return value

    def count(self, name: str, by: int = 1) -> None:
        def work():
            with self._write() as conn:
                self._incr(conn, name, by)
        self._retrying(work)

    def counters(self) -> dict[str, int]:
        with self._read() as conn:
            return {name: int(value) for name, value in conn.execute(select(counters_t.c.name, counters_t.c.value))}

    @staticmethod
    def _get_meta(conn, key: str) -> str | None:
        return conn.execute(select(meta_t.c.value).where(meta_t.c.key == key)).scalar()

    def _set_meta(self, conn, key: str, value: str) -> None:
        if conn.execute(update(meta_t).where(meta_t.c.key == key).values(value=value)).rowcount == 0:
            conn.execute(meta_t.insert().values(key=key, value=value))

    def get_meta(self, key: str) -> str | None:
        with self._read() as conn:
            return self._get_meta(conn, key)

    def set_meta(self, key: str, value: str) -> None:
        def work():
            with self._write() as conn:
                self._set_meta(conn, key, value)
        self._retrying(work)

    # --- accepted annotations -------------------------------------------------------------------

    def _retrying(self, work, budget: float = 5.0):
        """Run a write transaction again when it lost a race or a peer held it up: two first versions of one
        annotation inserted at once (PostgreSQL: the loser sees the winner's row on its next try), a deadlock, a
        lock wait past `lock_timeout`, or this process's own session ended by the server after it stalled
        mid-transaction (nothing of it was committed; every write here is idempotent, so trying again is safe).
        Tried again for up to `budget` seconds (a stalled peer's locks go within idle_transaction_ms)."""
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return work()
            except (IntegrityError, OperationalError) as exc:
                message = str(exc).lower()
                again = isinstance(exc, IntegrityError) or getattr(exc, "connection_invalidated", False) or any(
                    word in message for word in ("deadlock", "serializ", "lock timeout", "idle-in-transaction",
                                                 "server closed the connection", "terminating connection"))
                attempt += 1
                if not again or (attempt >= 5 and (isinstance(exc, IntegrityError)
                                                   or time.monotonic() - started > budget)):
                    raise
                time.sleep(min(0.05, 0.005 * attempt) * random.uniform(0.5, 1.5))

    @staticmethod
    def _deleted(conn, project: str, annotation: str) -> bool:
        """Whether the annotation's id has a tombstone (whatever task it was stored under)."""
        return conn.execute(select(deleted_t.c.deleted).where(deleted_t.c.project == project,
                                                              deleted_t.c.annotation == annotation)).first() is not None

    def _hold(self, conn, project: str, annotation: str) -> None:
        """Serialise every write of one annotation (its versions and its deletion) across processes and hosts:
        a transaction-scoped advisory lock on PostgreSQL (released at commit; no row that other annotations' writes
        need), the single writer on SQLite. A deletion racing the first version is then seen by it, or sees it."""
        if self.kind == "postgresql":
            key = int.from_bytes(hashlib.blake2b(f"{project}\x00{annotation}".encode(), digest_size=8).digest(),
                                 "big", signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def apply_annotation(self, project: str, task: str, annotation: str, *, updated_at, body: dict | None,
                         links: list[dict], cancelled: bool = False, force: bool = False,
                         counter: str | None = None) -> Applied:
        """Accept one version of an annotation: kept only when newer than the stored one (`force`: always, for a
        resync from Label Studio) and never after its deletion. Returns what happened; the links and their changes
        commit together."""
        return self._retrying(lambda: self._apply(project, task, annotation, updated_at, body, links, cancelled,
                                                  force, counter))

    def _apply(self, project, task, annotation, updated_at, body, links, cancelled, force, counter) -> Applied:
        now = time.time()
        version = version_of(updated_at, now)
        state = "cancelled" if cancelled else "accepted"
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")) if body is not None else None
        with self._write() as conn:
            self._hold(conn, project, annotation)
            outcome = None
            if self._deleted(conn, project, annotation):
                outcome = "gone"  # a deletion is final, even for a resync: Label Studio never reuses an id
            row = None
            if outcome is None:
                row = conn.execute(select(annotations_t.c.version, annotations_t.c.state).where(
                    annotations_t.c.project == project, annotations_t.c.task == task,
                    annotations_t.c.annotation == annotation).with_for_update()).first()
                if row is not None and not force:
                    if row.state == "deleted":
                        outcome = "gone"
                    elif row.version > version:
                        outcome = "stale"
                    elif row.version == version:
                        outcome = "duplicate"
            if outcome:
                if counter:
                    self._incr(conn, f"{counter}|{outcome}")
                return Applied(outcome)
            values = {"version": version, "updated_at": updated_at if isinstance(updated_at, str) else None,
                      "state": state, "body": raw, "received": now}
            if row is None:
                conn.execute(annotations_t.insert().values(project=project, task=task, annotation=annotation,
                                                           **values))
            else:
                conn.execute(update(annotations_t).where(
                    annotations_t.c.project == project, annotations_t.c.task == task,
                    annotations_t.c.annotation == annotation).values(**values))
            changes = self._replace_links(conn, project, task, annotation, [] if cancelled else links, now)
            # the rows every write shares, last: held only from here to the commit
            self._log_changes(conn, project, changes, now)
            if counter:
                self._incr(conn, f"{counter}|applied")
        return Applied("applied", 0 if cancelled else len(links), len(changes))

    def delete_annotation(self, project: str, task: str | None, annotation: str, counter: str | None = None) -> Applied:
        """A tombstone of the annotation's id: its links go, and no version of it, older or newer, arriving before or
        after, brings them back. `task` is not needed (Label Studio's ANNOTATIONS_DELETED names none)."""
        return self._retrying(lambda: self._delete(project, annotation, counter))

    def _delete(self, project, annotation, counter) -> Applied:
        now = time.time()
        with self._write() as conn:
            self._hold(conn, project, annotation)
            if self._deleted(conn, project, annotation):
                if counter:
                    self._incr(conn, f"{counter}|duplicate")
                return Applied("duplicate")
            conn.execute(deleted_t.insert().values(project=project, annotation=annotation, deleted=now))
            rows = conn.execute(select(annotations_t.c.task).where(
                annotations_t.c.project == project, annotations_t.c.annotation == annotation).with_for_update()).all()
            changes = []
            for row in rows:
                changes += self._replace_links(conn, project, row.task, annotation, [], now)
            conn.execute(update(annotations_t).where(annotations_t.c.project == project,
                                                     annotations_t.c.annotation == annotation)
                         .values(version=DELETED_VERSION, state="deleted", body=None, received=now))
            self._log_changes(conn, project, changes, now)
            if counter:
                self._incr(conn, f"{counter}|deleted")
        return Applied("deleted", 0, len(changes))

    def _replace_links(self, conn, project, task, annotation, links: list[dict], now: float) -> list:
        """Replace the links of one stored annotation; returns their changes [((span, code, origin), delta)], for
        `_log_changes` at the end of the transaction."""
        where = (links_t.c.project == project, links_t.c.task == task, links_t.c.annotation == annotation)
        old = conn.execute(select(links_t.c.region, links_t.c.span, links_t.c.code, links_t.c.origin,
                                  links_t.c.filename, links_t.c.label, links_t.c.start, links_t.c.end,
                                  links_t.c.semantic_rel).where(*where)).mappings().all()
        fields = ("region", "filename", "label", "start", "end", "span", "code", "semantic_rel", "origin")

        def same(a, b):
            return all((a.get(f) or None) == (b.get(f) or None) for f in fields)

        by_region = {row["region"]: dict(row) for row in old}
        new = {str(link["region"]): link for link in links}
        if len(new) == len(by_region) and all(r in by_region and same(by_region[r], link) for r, link in new.items()):
            return []  # the same links: nothing changes (a resync or a repeat)
        delta: Counter = Counter()
        for row in old:
            delta[(row["span"] or "", row["code"] or "", row["origin"] or "")] -= 1
        for link in new.values():
            delta[(link.get("span") or "", link.get("code") or "", link.get("origin") or "")] += 1
        conn.execute(delete(links_t).where(*where))
        if new:
            insert_rows(conn, links_t, [{"project": project, "task": task, "annotation": annotation,
                                                "region": region, **{f: link.get(f) for f in fields[1:]},
                                                "updated": now} for region, link in new.items()])
        return [(key, n) for key, n in sorted(delta.items()) if n]

    def _log_changes(self, conn, project, changes: list, now: float) -> None:
        """Append link changes to the ordered log. The sequence counter's row lock makes them commit in order and
        without gaps; taken as the transaction's last writes, it is held only until the commit."""
        if not changes:
            return
        last = self._incr(conn, "link_seq", len(changes))
        first = last - len(changes) + 1
        insert_rows(conn, changes_t, [
            {"seq": first + i, "project": project, "span": span, "code": code, "origin": origin or None,
             "delta": n, "at": now} for i, ((span, code, origin), n) in enumerate(changes)])

    # --- reading the accepted links -------------------------------------------------------------

    def accepted_links(self, project: str | None = None) -> list[dict]:
        with self._read() as conn:
            query = select(links_t).order_by(links_t.c.project, links_t.c.filename, links_t.c.start,
                                             links_t.c.annotation)
            if project is not None:
                query = query.where(links_t.c.project == project)
            return [dict(row) for row in conn.execute(query).mappings()]

    def accepted_count(self) -> int:
        with self._read() as conn:
            return conn.execute(select(func.count()).select_from(links_t)).scalar() or 0

    def annotation_states(self, project: str) -> dict[tuple[str, str], tuple[str, str]]:
        """(task, annotation) -> (state, version) of a project's stored annotations."""
        with self._read() as conn:
            rows = conn.execute(select(annotations_t.c.task, annotations_t.c.annotation, annotations_t.c.state,
                                       annotations_t.c.version).where(annotations_t.c.project == project))
            return {(r.task, r.annotation): (r.state, r.version) for r in rows}

    def learned_snapshot(self) -> tuple[int, list[tuple[str, str, str, str | None]]]:
        """(sequence number, [(project, mention, code, origin)]) read in one snapshot: the state to start from."""
        with self._read(snapshot=True) as conn:
            seq = conn.execute(select(counters_t.c.value).where(counters_t.c.name == "link_seq")).scalar() or 0
            rows = conn.execute(select(links_t.c.project, links_t.c.span, links_t.c.code, links_t.c.origin)
                                .order_by(links_t.c.project, links_t.c.task, links_t.c.annotation,
                                          links_t.c.region)).all()
        return int(seq), [tuple(r) for r in rows]

    def link_seq(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(counters_t.c.value).where(counters_t.c.name == "link_seq")).scalar() or 0)

    def changes_since(self, seq: int, limit: int = 20_000) -> list[tuple[int, str, str, str, str | None, int]] | None:
        """The link changes after `seq`, in order; None when some were compacted away (rebuild from a snapshot)."""
        with self._read() as conn:
            # a bounded range: the planner takes the primary key's index however stale its statistics are (an
            # open-ended `seq > n` was read as a tenth of the table: a full scan per request on PostgreSQL)
            rows = conn.execute(select(changes_t.c.seq, changes_t.c.project, changes_t.c.span, changes_t.c.code,
                                       changes_t.c.origin, changes_t.c.delta)
                                .where(changes_t.c.seq > seq, changes_t.c.seq <= seq + limit)
                                .order_by(changes_t.c.seq)).all()
        if rows and rows[0][0] != seq + 1:
            return None
        return [tuple(r) for r in rows]

    # --- candidate lists (the picker) -----------------------------------------------------------

    def put_candidates(self, project: str, doc: str, nodes: list[dict]) -> None:
        self.put_candidate_lists(project, {doc: nodes})

    def put_candidate_lists(self, project: str, lists: dict[str, list[dict]]) -> None:
        """The candidate lists of a request's documents ({doc: mention nodes}), in one transaction: one upsert
        (a mention listed again replaces its list)."""
        now = time.time()
        rows = [{"project": project, "doc": doc, "node": node["node"], "stored": now,
                 "payload": json.dumps(node, ensure_ascii=False, separators=(",", ":"))}
                for doc, nodes in lists.items() for node in nodes]
        if not rows:
            return
        rows = list({(r["doc"], r["node"]): r for r in rows}.values())  # a node twice in one request: the last

        def work():
            with self._write() as conn:
                if self._upsert_candidates is not None:
                    insert_rows(conn, self._upsert_candidates, rows)
                    return
                for doc in {r["doc"] for r in rows}:
                    conn.execute(delete(candidates_t).where(
                        candidates_t.c.project == project, candidates_t.c.doc == doc,
                        candidates_t.c.node.in_([r["node"] for r in rows if r["doc"] == doc])))
                insert_rows(conn, candidates_t, rows)
        self._retrying(work)

    @cached_property
    def _upsert_candidates(self):
        """rows -> one statement writing candidate lists, each replacing its mention's previous one (None where the
        dialect has no upsert: delete, then insert)."""
        if self.kind == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.kind == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            return None

        def upsert(rows):
            statement = insert(candidates_t).values(rows)
            return statement.on_conflict_do_update(index_elements=["project", "doc", "node"],
                                                   set_={"payload": statement.excluded.payload,
                                                         "stored": statement.excluded.stored})
        return upsert

    def get_candidates(self, project: str | None, doc: str) -> list[dict]:
        """A document's candidate lists: of one project, or (no project) the newest per mention of any."""
        query = select(candidates_t.c.node, candidates_t.c.payload, candidates_t.c.stored).where(
            candidates_t.c.doc == doc, candidates_t.c.stored >= time.time() - self.candidates_ttl)
        if project is not None:
            query = query.where(candidates_t.c.project == project)
        with self._read() as conn:
            rows = conn.execute(query.order_by(candidates_t.c.stored)).all()
        newest = {node: payload for node, payload, _ in rows}
        return [json.loads(payload) for payload in newest.values()]

    # --- projects -------------------------------------------------------------------------------

    def set_project(self, project: str, hostname: str | None, access_token: str | None) -> None:
        def work():
            with self._write() as conn:
                values = {"hostname": hostname, "access_token": access_token, "updated": time.time()}
                if conn.execute(update(projects_t).where(projects_t.c.project == project).values(**values)
                                ).rowcount == 0:
                    conn.execute(projects_t.insert().values(project=project, **values))
        self._retrying(work)

    def get_project(self, project: str) -> dict | None:
        with self._read() as conn:
            row = conn.execute(select(projects_t).where(projects_t.c.project == project)).mappings().first()
        return dict(row) if row else None

    # --- housekeeping ---------------------------------------------------------------------------

    def compact(self) -> dict:
        """Drop expired candidate lists and link changes every process has had time to read."""
        now = time.time()

        def work():
            with self._write() as conn:
                expired = conn.execute(delete(candidates_t).where(candidates_t.c.stored < now - self.candidates_ttl)
                                       ).rowcount
                seq = conn.execute(select(counters_t.c.value).where(counters_t.c.name == "link_seq")).scalar() or 0
                dropped = conn.execute(delete(changes_t).where(changes_t.c.seq <= seq - self.keep_changes,
                                                               changes_t.c.at < now - 3600)).rowcount
            return {"candidate_lists_expired": expired, "link_changes_dropped": dropped}
        return self._retrying(work)

    def describe(self) -> dict:
        """What /health shows: where the facts are and how many."""
        try:
            with self._read() as conn:
                count = {}
                for name, table in (("annotations", annotations_t), ("accepted_links", links_t),
                                    ("candidate_lists", candidates_t), ("link_changes", changes_t)):
                    count[name] = conn.execute(select(func.count()).select_from(table)).scalar() or 0
                deleted = conn.execute(select(func.count()).select_from(deleted_t)).scalar() or 0
        except SQLAlchemyError as exc:
            return {"kind": self.kind, "location": self.location, "available": False,
                    "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        return {"kind": self.kind, "location": self.location, "available": True, **count,
                "deleted_annotations": deleted}
