"""The store of record's tables (SQLAlchemy Core) and the migrations from earlier schemas.

Schema 1 kept accepted links per (project, task, region); schema 2 kept a deletion as an annotations row under the
task it named (or "?"); schema 3 keeps it as a tombstone of the annotation's id (`deleted_annotations`). The store
(backend/records/store.py) runs a migration once, under its migration lock, when the recorded schema version differs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text, select, text, update

log = logging.getLogger("backend.records.store")
SCHEMA_VERSION = "3"
DELETED_VERSION = "~"  # sorts after every timestamp version: a deletion is final

metadata = MetaData()
meta_t = Table("meta", metadata, Column("key", String(200), primary_key=True), Column("value", Text, nullable=False))
counters_t = Table("counters", metadata, Column("name", String(200), primary_key=True),
                   Column("value", BigInteger, nullable=False))
annotations_t = Table(
    "annotations", metadata,
    Column("project", String(64), primary_key=True), Column("task", String(64), primary_key=True),
    Column("annotation", String(64), primary_key=True),
    Column("version", String(40), nullable=False),  # sortable: updated_at as fixed-width epoch seconds, or "~"
    Column("updated_at", String(64)),  # as Label Studio wrote it
    Column("state", String(16), nullable=False),  # accepted | cancelled | deleted
    Column("body", Text),  # {"task": {"id", "data"}, "annotation": {...}}: what the links are derived from
    Column("received", Float, nullable=False))
links_t = Table(
    "links", metadata,
    Column("project", String(64), primary_key=True), Column("task", String(64), primary_key=True),
    Column("annotation", String(64), primary_key=True), Column("region", String(200), primary_key=True),
    Column("filename", Text), Column("label", Text), Column("start", Integer), Column("end", Integer),
    Column("span", Text), Column("code", Text), Column("semantic_rel", Text), Column("origin", String(32)),
    Column("updated", Float, nullable=False))
changes_t = Table(
    "link_changes", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("project", String(64), nullable=False), Column("span", Text, nullable=False),
    Column("code", Text, nullable=False), Column("origin", String(32)), Column("delta", Integer, nullable=False),
    Column("at", Float, nullable=False))
candidates_t = Table(
    "candidate_lists", metadata,
    Column("project", String(64), primary_key=True), Column("doc", String(400), primary_key=True),
    Column("node", String(1000), primary_key=True), Column("payload", Text, nullable=False),
    Column("stored", Float, nullable=False),
    Index("candidate_lists_stored", "stored"))
# A deletion is keyed by the annotation's id alone (unique within a Label Studio instance: ANNOTATIONS_DELETED carries
# no task), so every later version of that annotation finds it, whatever task it names and whenever it arrives.
deleted_t = Table(
    "deleted_annotations", metadata,
    Column("project", String(64), primary_key=True), Column("annotation", String(64), primary_key=True),
    Column("deleted", Float, nullable=False))
projects_t = Table(
    "projects", metadata,
    Column("project", String(64), primary_key=True), Column("hostname", Text), Column("access_token", Text),
    Column("updated", Float, nullable=False))


def version_of(updated_at, fallback: float) -> str:
    """A sortable version from Label Studio's `updated_at` (ISO 8601); `fallback` (epoch) when it has none."""
    seconds = fallback
    if isinstance(updated_at, str) and updated_at:
        try:
            seconds = datetime.fromisoformat(updated_at.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    elif isinstance(updated_at, (int, float)) and not isinstance(updated_at, bool) and math.isfinite(updated_at):
        seconds = float(updated_at)
    return f"{max(0.0, seconds):020.6f}"


def migrate_v1(store, conn) -> None:
    """Schema 1 kept accepted links per (project, task, region), documents by name, events in a table."""
    now = time.time()
    rows = conn.execute(text("SELECT project, task, region, annotation, filename, label, start, end, span, code, "
                             "semantic_rel, updated, origin FROM accepted_links")).mappings().all()
    by_annotation: dict = {}
    for row in rows:
        key = (row["project"], row["task"], row["annotation"] or f"task-{row['task']}")
        by_annotation.setdefault(key, []).append(row)
    for (project, task, annotation), items in by_annotation.items():
        version = version_of(None, max(r["updated"] for r in items))
        conn.execute(annotations_t.insert().values(project=project, task=task, annotation=annotation,
                                                   version=version, updated_at=None, state="accepted", body=None,
                                                   received=now))
        links = [{k: r[k] for k in ("region", "filename", "label", "start", "end", "span", "code",
                                    "semantic_rel", "origin")} for r in items]
        store._log_changes(conn, project, store._replace_links(conn, project, task, annotation, links, now), now)
    docs = conn.execute(text("SELECT doc, node, payload, updated FROM documents")).all()
    if docs:
        conn.execute(candidates_t.insert(), [{"project": "", "doc": d, "node": n, "payload": p, "stored": u}
                                             for d, n, p, u in docs])
    pending = conn.execute(text("SELECT action, body FROM events WHERE done IS NULL ORDER BY id")).all()
    for name in ("accepted_links", "documents", "events"):
        conn.execute(text(f"ALTER TABLE {name} RENAME TO legacy_{name}"))
    store._set_meta(conn, "legacy_pending_events", json.dumps([[a, b] for a, b in pending]))
    log.warning("migrated the data directory from schema 1: %d accepted links of %d annotations, %d candidate "
                "lists, %d unprocessed events kept for replay (old tables kept as legacy_*)", len(rows),
                len(by_annotation), len(docs), len(pending))


def migrate_tombstones(store, conn) -> None:
    """Schema 2 kept a deletion as an annotations row under its task (or "?"): each becomes a tombstone of the
    annotation's id."""
    known = {tuple(r) for r in conn.execute(select(deleted_t.c.project, deleted_t.c.annotation))}
    rows = {(r.project, r.annotation) for r in conn.execute(
        select(annotations_t.c.project, annotations_t.c.annotation).where(annotations_t.c.state == "deleted"))}
    new = sorted(rows - known)
    if new:
        now = time.time()
        conn.execute(deleted_t.insert(), [{"project": p, "annotation": a, "deleted": now} for p, a in new])
        # their links go too: a version stored under another task before this schema is deleted as well
        for project, annotation in new:
            changes = []
            for (task,) in conn.execute(select(annotations_t.c.task).where(
                    annotations_t.c.project == project, annotations_t.c.annotation == annotation,
                    annotations_t.c.state != "deleted")).all():
                changes += store._replace_links(conn, project, task, annotation, [], now)
            store._log_changes(conn, project, changes, now)
            conn.execute(update(annotations_t).where(annotations_t.c.project == project,
                                                     annotations_t.c.annotation == annotation)
                         .values(version=DELETED_VERSION, state="deleted", body=None))
