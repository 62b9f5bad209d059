"""The store of record, on SQLite and on PostgreSQL: newest version wins whatever the order, repeats are no-ops,
deletions are final, facts are per project, the link-change log lets every process follow incrementally, and a
data directory of the earlier schema is carried over."""

import json
import random
import sqlite3
import time

from pathlib import Path

import pytest

from backend.serving.config import BackendConfig
from backend.records.learning import LearnedLayers
from backend.records.store import Store
from clinlinker.linking.learned import LearnedTerms


def link(region, code, span="fiebre", origin="prediction-changed"):
    return {"region": region, "filename": "caso", "label": "SINTOMA", "start": 13, "end": 19, "span": span,
            "code": code, "semantic_rel": "EXACT", "origin": origin}


def stamp(minute: int) -> str:
    return f"2026-11-25T10:{minute:02d}:00.000000Z"


@pytest.fixture
def store(tmp_path, database_url):
    store = Store(database_url, tmp_path / "var")
    yield store
    store.dispose()


def test_newest_version_wins_in_any_order_and_repeats_are_no_ops(store):
    versions = [(minute, f"C{minute}") for minute in range(25)]
    shuffled = versions * 2  # every version delivered twice
    random.Random(7).shuffle(shuffled)
    outcomes = [store.apply_annotation("3", "7", "70", updated_at=stamp(m), body={"n": m}, links=[link("r", code)],
                                       counter="webhook|ANNOTATION_UPDATED").outcome for m, code in shuffled]
    assert [l["code"] for l in store.accepted_links()] == ["C24"]
    assert outcomes.count("applied") + outcomes.count("stale") + outcomes.count("duplicate") == 50
    assert outcomes.count("duplicate") >= 1 and outcomes.count("applied") <= 25
    counters = store.counters()
    assert counters["webhook|ANNOTATION_UPDATED|applied"] == outcomes.count("applied")
    assert counters["webhook|ANNOTATION_UPDATED|stale"] == outcomes.count("stale")


def test_a_deletion_is_final(store):
    store.apply_annotation("3", "7", "70", updated_at=stamp(1), body=None, links=[link("r", "A")])
    assert store.delete_annotation("3", None, "70").outcome == "deleted"  # ANNOTATIONS_DELETED carries ids only
    assert store.accepted_links() == []
    assert store.apply_annotation("3", "7", "70", updated_at=stamp(9), body=None, links=[link("r", "B")]).outcome \
        == "gone"
    assert store.accepted_links() == []
    assert store.delete_annotation("3", None, "70").outcome == "duplicate"
    # a deletion that arrives before the annotation it deletes, with ids only, as Label Studio sends it
    assert store.delete_annotation("3", None, "80").outcome == "deleted"
    assert store.apply_annotation("3", "8", "80", updated_at=stamp(1), body=None, links=[link("r", "C")]).outcome \
        == "gone"
    # not even a resync from Label Studio (force) brings a deleted annotation back
    assert store.apply_annotation("3", "8", "80", updated_at=stamp(2), body=None, links=[link("r", "C")],
                                  force=True).outcome == "gone"
    assert store.accepted_links() == []
    assert store.describe()["deleted_annotations"] == 2


RACE_SCRIPT = """
import sys, time
from backend.records.store import Store
url, var, role, start, count = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
store = Store(url or None, var)
while time.time() < start:
    time.sleep(0.0005)
for i in (reversed(range(count)) if role == "delete" else range(count)):  # they cross: some of each order
    if role == "delete":
        store.delete_annotation("9", None, str(1000 + i))  # ANNOTATIONS_DELETED: ids only
    else:
        store.apply_annotation("9", str(i), str(1000 + i), updated_at="2026-11-25T10:00:00Z", body=None,
                               links=[{"region": "r", "filename": "caso", "label": "SINTOMA", "start": 0, "end": 6,
                                       "span": "fiebre", "code": "386661006", "semantic_rel": "EXACT"}])
"""


def test_a_deletion_racing_the_first_version_across_two_processes_is_final(tmp_path, database_url):
    """Two processes, one storing the first version of 60 annotations, the other deleting them by id, started at
    the same instant: whichever arrives first, no deleted annotation keeps a link, and the change log agrees."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    var = tmp_path / "var"
    store = Store(database_url, var)  # the schema, made once before the race
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", RACE_SCRIPT, database_url or "", str(var), role, str(start),
                               "60"], cwd=ROOT) for role in ("delete", "apply")]
    assert [p.wait(120) for p in procs] == [0, 0]
    assert store.accepted_links("9") == []
    seq, rows = store.learned_snapshot()
    assert [r for r in rows if r[0] == "9"] == []
    assert sum(change[5] for change in store.changes_since(0) or [] if change[1] == "9") == 0
    assert store.describe()["deleted_annotations"] == 60
    store.dispose()


def test_a_cancelled_annotation_keeps_no_links(store):
    store.apply_annotation("3", "7", "70", updated_at=stamp(1), body=None, links=[link("r", "A")])
    store.apply_annotation("3", "7", "70", updated_at=stamp(2), body=None, links=[link("r", "A")], cancelled=True)
    assert store.accepted_links() == []
    assert store.annotation_states("3")[("7", "70")][0] == "cancelled"


def test_facts_are_per_project(store):
    store.apply_annotation("3", "7", "70", updated_at=stamp(1), body=None, links=[link("r", "A")])
    store.apply_annotation("4", "7", "70", updated_at=stamp(1), body=None, links=[link("r", "B")])
    assert [l["code"] for l in store.accepted_links("3")] == ["A"]
    assert [l["code"] for l in store.accepted_links("4")] == ["B"]
    store.put_candidates("3", "caso.txt", [{"node": "fiebre [13-19]", "candidates": [{"code": "A"}]}])
    store.put_candidates("4", "caso.txt", [{"node": "fiebre [13-19]", "candidates": [{"code": "B"}]}])
    assert store.get_candidates("3", "caso.txt")[0]["candidates"] == [{"code": "A"}]
    assert store.get_candidates("4", "caso.txt")[0]["candidates"] == [{"code": "B"}]
    assert store.get_candidates(None, "caso.txt")[0]["candidates"] == [{"code": "B"}]  # no project: the newest


def test_candidate_lists_expire(tmp_path, database_url):
    store = Store(database_url, tmp_path / "var", candidates_ttl_days=0.5 / 86400)  # half a second
    store.put_candidates("3", "d", [{"node": "n", "candidates": []}])
    assert store.get_candidates("3", "d")
    time.sleep(0.6)
    assert store.get_candidates("3", "d") == []
    assert store.compact()["candidate_lists_expired"] == 1
    store.dispose()


def test_link_changes_are_ordered_without_gaps_and_compaction_is_detected(tmp_path, database_url):
    store = Store(database_url, tmp_path / "var", keep_changes=2)
    store.apply_annotation("3", "7", "70", updated_at=stamp(1), body=None, links=[link("r", "A")])
    store.apply_annotation("3", "7", "70", updated_at=stamp(2), body=None, links=[link("r", "B")])
    store.apply_annotation("3", "7", "70", updated_at=stamp(2), body=None, links=[link("r", "B")])  # a repeat
    changes = store.changes_since(0)
    assert [(seq, code, delta) for seq, _, _, code, _, delta in changes] == [(1, "A", 1), (2, "A", -1), (3, "B", 1)]
    assert store.changes_since(3) == []
    with store.engine.begin() as conn:  # every change older than an hour: compaction may drop the oldest
        conn.exec_driver_sql("UPDATE link_changes SET at = at - 7200")
    assert store.compact()["link_changes_dropped"] == 1
    assert store.changes_since(0) is None  # a process this far behind must rebuild
    assert store.changes_since(1) is not None
    store.dispose()


def test_incremental_learned_terms_equal_a_full_rebuild(lexical_index):
    kb = lexical_index.kb
    codes = [c.code for c in list(kb.concepts)[:8]]
    rng = random.Random(3)
    words = ["fiebre", "Fiebre alta", "dolor abdominal", "tos seca", "cefalea", "IAM", "dolor  abdominal"]
    live: list[tuple[str, str]] = []
    layer = LearnedTerms(kb, lexical_index.encoder)
    for _ in range(200):
        if live and rng.random() < 0.4:
            pair = live.pop(rng.randrange(len(live)))
            layer.apply([(pair[0], pair[1], -1)])
        else:
            pair = (rng.choice(words), rng.choice(codes + ["NO_CODE", "A+B"]))
            live.append(pair)
            layer.apply([(pair[0], pair[1], 1)])
    full = LearnedTerms(kb, lexical_index.encoder).replace(live)
    mentions = ["fiebre", "dolor abdominal agudo", "tos", "iam"]
    found = lexical_index.search(mentions, 25)

    def view(lists):
        return [[(c.code, round(c.score, 5)) for c in cands] for cands in lists]

    assert view(layer.merge(mentions, found, 25)) == view(full.merge(mentions, found, 25))
    assert layer.describe() == full.describe()


def test_every_process_follows_the_changes(tmp_path, database_url, lexical_index):
    from clinlinker.linking.linker import Linker

    store = Store(database_url, tmp_path / "var")
    linker = Linker(lexical_index)
    code = next(iter(lexical_index.kb.concepts)).code
    first, second = LearnedLayers(store), LearnedLayers(store, across_projects=True)
    first.sync(linker), second.sync(linker)
    store.apply_annotation("3", "7", "70", updated_at=stamp(1), body=None, links=[link("r", code, span="zzz")])
    first.sync(linker), second.sync(linker)
    assert first.rebuilds == 1 and second.rebuilds == 1  # incremental after the first build
    assert len(first.layer("3", linker)) == 1 and first.layer("4", linker) is None
    assert len(second.layer("4", linker)) == 1  # shared across projects when configured
    store.delete_annotation("3", "7", "70")
    first.sync(linker)
    assert len(first.layer("3", linker)) == 0 and first.rebuilds == 1
    # a hot swap: the new linker gets its own layers; requests still on the old one keep theirs
    swapped = Linker(lexical_index)
    store.apply_annotation("3", "8", "80", updated_at=stamp(1), body=None, links=[link("r", code, span="yyy")])
    first.sync(swapped)
    assert len(first.layer("3", swapped)) == 1 and first.rebuilds == 2
    assert len(first.layer("3", linker)) == 0  # not yet synced, but never the other linker's layer
    first.sync(linker)
    assert len(first.layer("3", linker)) == 1 and first.rebuilds == 2  # incremental, no rebuild ping-pong
    assert first.layer("3", Linker(lexical_index)) is None
    store.dispose()


def test_a_schema_1_data_directory_is_carried_over(tmp_path):
    """A data directory written by the previous version (SQLite, accepted links per task, events table)."""
    from backend.serving.loading import load_model

    var = tmp_path / "var"
    var.mkdir()
    conn = sqlite3.connect(var / "backend.sqlite3")
    conn.executescript("""
    CREATE TABLE documents (doc TEXT NOT NULL, node TEXT NOT NULL, payload TEXT NOT NULL, updated REAL NOT NULL,
                            PRIMARY KEY (doc, node));
    CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, received REAL NOT NULL, action TEXT NOT NULL,
                         body TEXT NOT NULL, claimed REAL, done REAL, error TEXT);
    CREATE TABLE accepted_links (project TEXT NOT NULL, task TEXT NOT NULL, region TEXT NOT NULL, annotation TEXT,
                                 filename TEXT, label TEXT, start INTEGER, end INTEGER, span TEXT, code TEXT,
                                 semantic_rel TEXT, updated REAL NOT NULL, origin TEXT NOT NULL DEFAULT '',
                                 PRIMARY KEY (project, task, region));
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)
    conn.execute("INSERT INTO accepted_links VALUES ('3', '7', 'a', '70', 'caso', 'SINTOMA', 13, 19, 'fiebre', "
                 "'386661006', 'EXACT', 1795651414.5, 'prediction-changed')")
    conn.execute("INSERT INTO documents VALUES ('caso.txt', 'fiebre [13-19]', ?, 1795651414.5)",
                 (json.dumps({"node": "fiebre [13-19]", "candidates": []}),))
    pending = {"action": "ANNOTATION_CREATED", "project": {"id": 3}, "task": {"id": 8, "data": {}},
               "annotation": {"id": 80, "task": 8, "result": [
                   {"id": "b", "from_name": "label", "to_name": "text", "type": "labels",
                    "value": {"start": 0, "end": 3, "text": "tos", "labels": ["SINTOMA"]}},
                   {"id": "b", "from_name": "code", "to_name": "text", "type": "textarea",
                    "value": {"start": 0, "end": 3, "text": ["49727002"]}}]}}
    conn.execute("INSERT INTO events (received, action, body) VALUES (1, 'ANNOTATION_CREATED', ?)",
                 (json.dumps(pending),))
    conn.execute("INSERT INTO events (received, action, body, done) VALUES (1, 'ANNOTATION_CREATED', '{}', 2)")
    conn.execute("INSERT INTO meta VALUES ('training', '{\"status\": \"never\"}')")
    conn.commit()
    conn.close()
    model, info = load_model(BackendConfig(data_dir=str(var), worker=False))
    store = info["store"]
    assert sorted(l["code"] for l in store.accepted_links()) == ["386661006", "49727002"]  # old + replayed event
    assert store.get_candidates(None, "caso.txt")[0]["node"] == "fiebre [13-19]"
    assert store.get_meta("training") == '{"status": "never"}'
    assert model.layers.describe()["terms"] == 2
    model2, info2 = load_model(BackendConfig(data_dir=str(var), worker=False))  # a second start changes nothing
    assert len(info2["store"].accepted_links()) == 2


def test_sqlite_writers_of_several_processes_wait_on_one_file_lock(tmp_path):
    """A write transaction on SQLite waits, in the kernel, for the writer lock every process of the data directory
    shares (SQLite's own wait sleeps 1, 2, 5, 10 ... ms between tries); a process that holds it keeps another
    process's write out until it lets go, and that write then lands."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    store = Store(None, tmp_path)
    script = ("import sys; from backend.records.store import Store; "
              "Store(None, sys.argv[1]).put_candidate_lists('p', {'doc': [{'node': 'n', 'candidates': []}]})")
    with store._one_writer():
        other = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT)
        # wait until the other process sleeps in the kernel's file-lock wait (not a guess at how long it takes to
        # get there: under load that may be longer than any sleep)
        deadline = time.monotonic() + 120
        while not any(w in Path(f"/proc/{other.pid}/wchan").read_text() for w in ("lock_inode_wait", "flock")):
            assert other.poll() is None, "the other process wrote while this one held the writer lock"
            assert time.monotonic() < deadline, "the other process never waited for the writer lock"
            time.sleep(0.02)
        assert other.poll() is None and store.get_candidates("p", "doc") == []
    assert other.wait(60) == 0
    assert [n["node"] for n in store.get_candidates("p", "doc")] == ["n"]


def test_a_schema_2_tombstone_under_a_guessed_task_becomes_final(tmp_path, database_url):
    """Schema 2 kept an ids-only deletion under task "?", and a version of the same annotation arriving later was
    stored under its real task with its links. Opening the store migrates: the deletion holds for every task, the
    links it let through go (with their change in the log), and the annotation stays deleted."""
    from sqlalchemy import delete, insert, update

    from backend.records.schema import annotations_t, deleted_t, meta_t

    store = Store(database_url, tmp_path / "var")
    store.apply_annotation("3", "8", "80", updated_at=stamp(1), body=None, links=[link("r", "C")])
    with store._write() as conn:  # the state schema 2 left: a tombstone row under "?", no tombstone of the id
        conn.execute(insert(annotations_t).values(project="3", task="?", annotation="80", version="~",
                                                  updated_at=None, state="deleted", body=None, received=0.0))
        conn.execute(delete(deleted_t))
        conn.execute(update(meta_t).where(meta_t.c.key == "schema_version").values(value="2"))
    assert [l["code"] for l in store.accepted_links()] == ["C"]
    store.dispose()
    migrated = Store(database_url, tmp_path / "var")
    assert migrated.accepted_links() == []
    assert sum(change[5] for change in migrated.changes_since(0)) == 0  # +1 then -1: followers drop it too
    assert migrated.apply_annotation("3", "8", "80", updated_at=stamp(5), body=None, links=[link("r", "D")]).outcome \
        == "gone"
    assert migrated.get_meta("schema_version") == "3"
    migrated.dispose()
