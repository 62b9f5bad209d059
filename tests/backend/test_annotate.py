"""Bulk pre-annotation (`clinlinker annotate`): its predictions are /predict's, its outputs agree with each other,
a killed run resumes from its last finished shard, bad input is named, not guessed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from backend.jobs.annotate import AnnotateSettings, annotate
from backend.labelstudio.corpus import read_json_array
from backend.serving.app import create_app
from backend.serving.loading import load_model
from backend.serving.config import BackendConfig
from clinlinker.cli import main
from clinlinker.search.index import build_index, save_index
from tests.conftest import FIXTURES, ROOT

LINKS = FIXTURES / "corpus" / "links.tsv"
TEXTS = FIXTURES / "corpus" / "texts"


@pytest.fixture(scope="module")
def dense_index_dir(tmp_path_factory, demo_kb, tiny_encoder):
    return save_index(build_index(demo_kb, tiny_encoder), tmp_path_factory.mktemp("annotate") / "ix")


def corpus_tasks(n: int = 12) -> list[dict]:
    """Tasks in Label Studio's import format: spans in data.mentions, mention strings repeated across tasks."""
    words = [("fiebre alta", "SINTOMA"), ("dolor abdominal agudo", "SINTOMA"), ("apendicectomía", "PROCEDIMIENTO"),
             ("diabetes mellitus tipo 2", "ENFERMEDAD"), ("tos seca", "SINTOMA"), ("hipertensión", "ENFERMEDAD")]
    tasks = []
    for i in range(n):
        chosen = [words[(i + j) % len(words)] for j in range(1 + i % 3)]
        text, mentions = "Paciente con ", []
        for word, label in chosen:
            mentions.append({"start": len(text), "end": len(text) + len(word), "label": label})
            text += word + " y "
        tasks.append({"id": 100 + i, "data": {"text": text + "nada más.", "doc_id": f"caso-{i}",
                                              "mentions": mentions if i != 5 else []}})
    return tasks


def predict_via_backend(index_dir, tasks, tmp_path) -> list[dict]:
    config = BackendConfig(index_dir=str(index_dir), data_dir=str(tmp_path / "var-predict"), worker=False)
    model, info = load_model(config)
    client = create_app(config, model, info).test_client()
    reply = client.post("/predict", json={"tasks": tasks, "project": "1.1"})
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()["results"]


def without_scores(value):
    """A prediction with its scores rounded to 1e-4: a vector's last bits depend on the batch it was encoded in (the
    padding length), in /predict as in annotate; codes, order, texts and ids must be equal."""
    if isinstance(value, dict):
        return {k: round(v, 4) if k == "score" else without_scores(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_scores(v) for v in value]
    return value


def read_out(out) -> tuple[list, list, list]:
    tasks = json.loads((out / "tasks.json").read_text())
    rows = [line.split("\t") for line in (out / "links.tsv").read_text().splitlines()]
    cands = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    return tasks, rows, cands


def test_annotate_gives_what_predict_answers_and_consistent_outputs(dense_index_dir, tmp_path):
    tasks = corpus_tasks()
    (tmp_path / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False))
    summary = annotate([str(tmp_path / "tasks.json")], tmp_path / "out", AnnotateSettings(index=str(dense_index_dir)),
                       shard_size=5, chunk_size=4, show_progress=False)
    out_tasks, rows, cands = read_out(tmp_path / "out")
    expected = predict_via_backend(dense_index_dir, tasks, tmp_path)
    assert without_scores([t["predictions"] for t in out_tasks]) == without_scores([[p] for p in expected])
    assert [{k: v for k, v in t.items() if k != "predictions"} for t in out_tasks] == tasks  # the tasks kept as given
    spans = sum(len(t["data"]["mentions"]) for t in tasks)
    distinct = {t["data"]["text"][m["start"]:m["end"]] for t in tasks for m in t["data"]["mentions"]}
    assert summary["spans"] == spans and summary["distinct_mentions"] == len(distinct) == 6
    assert summary["shards"] == 3 and summary["model_version"] == expected[0]["model_version"]
    assert rows[0] == ["filename", "mark", "label", "off0", "off1", "span", "code", "semantic_rel"]
    assert len(rows) - 1 == len(cands) == spans
    for row, c in zip(rows[1:], cands):
        assert row[6] == c["candidates"][0]["code"] and len(c["candidates"]) == (21 if row[2] == "PROCEDIMIENTO" else 25)
        assert (row[0], row[2], int(row[3]), int(row[4]), row[5]) == (c["filename"], c["label"], c["start"],
                                                                      c["end"], c["span"])
    # each top-1 is the taxonomy pick of the prediction of the same span
    picks = [r["value"]["taxonomy"][0][1].split(" | ")[0] for t in out_tasks for r in t["predictions"][0]["result"]
             if r["type"] == "taxonomy"]
    assert picks == [row[6] for row in rows[1:]]
    # every distinct mention encoded once: the chunks hold each string once, with its vector
    import numpy as np

    work = tmp_path / "out" / "work"
    listed = [json.loads(line) for p in sorted((work / "mentions").glob("*.jsonl"))
              for line in p.read_text().splitlines()]
    assert sorted(listed) == sorted(distinct)
    assert sum(len(np.load(p)) for p in (work / "vectors").glob("*.npy")) == len(distinct)


def test_an_empty_shard_marker_left_by_a_kill_is_answered_again(dense_index_dir, tmp_path):
    # a run killed between creating a shard's marker and writing its model version into it
    tasks = corpus_tasks()
    (tmp_path / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False))
    run = dict(shard_size=5, chunk_size=4, show_progress=False)
    annotate([str(tmp_path / "tasks.json")], tmp_path / "out", AnnotateSettings(index=str(dense_index_dir)), **run)
    first = read_out(tmp_path / "out")
    marker = tmp_path / "out" / "work" / "out" / "shard-00001.done"
    marker.write_text("")
    (tmp_path / "out" / "work" / "out" / "shard-00001.links.tsv").write_text("cut")
    summary = annotate([str(tmp_path / "tasks.json")], tmp_path / "out", AnnotateSettings(index=str(dense_index_dir)),
                       **run)
    assert marker.read_text() == summary["model_version"] != ""
    assert read_out(tmp_path / "out") == first


def test_a_spans_tsv_with_texts_gives_the_same_as_the_same_tasks_in_json(dense_index_dir, tmp_path, capsys):
    assert main(["annotate", str(LINKS), "--texts", str(TEXTS), "--index", str(dense_index_dir), "--out",
                 str(tmp_path / "a"), "--shard-size", "1"]) == 0
    assert "tasks.json (import into Label Studio)" in capsys.readouterr().out
    from_tsv, rows, _ = read_out(tmp_path / "a")
    gold = [line.split("\t") for line in LINKS.read_text().splitlines()[1:]]
    assert [r[:6] for r in rows[1:]] == [g[:6] for g in gold]  # one row per span, in the corpus order
    tasks = [{k: v for k, v in t.items() if k != "predictions"} for t in from_tsv]
    (tmp_path / "tasks.jsonl").write_text("\n".join(json.dumps(t, ensure_ascii=False) for t in tasks))
    assert main(["annotate", str(tmp_path / "tasks.jsonl"), "--index", str(dense_index_dir), "--out",
                 str(tmp_path / "b")]) == 0
    assert without_scores(json.loads((tmp_path / "b" / "tasks.json").read_text())) == without_scores(from_tsv)
    assert without_scores(predict_via_backend(dense_index_dir, tasks, tmp_path)) == without_scores(
        [t["predictions"][0] for t in from_tsv])


def test_bad_input_is_named_by_file_and_line_and_nothing_is_written(tmp_path, capsys):
    good = corpus_tasks(3)
    bad = json.loads(json.dumps(good))
    bad[2]["data"]["mentions"][0]["end"] = 999
    (tmp_path / "bad.jsonl").write_text("\n".join(json.dumps(t) for t in bad) + "\n")
    assert main(["annotate", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.jsonl'}:3" in err and "outside the text" in err
    assert not (tmp_path / "out" / "tasks.json").exists()
    (tmp_path / "cut.json").write_text(json.dumps(good, indent=1)[:-40])
    assert main(["annotate", str(tmp_path / "cut.json"), "--out", str(tmp_path / "out2")]) == 2
    assert "cut.json" in capsys.readouterr().err
    assert main(["annotate", str(LINKS), "--out", str(tmp_path / "out3")]) == 2
    assert "needs --texts" in capsys.readouterr().err


def test_the_json_reader_streams_items_across_its_buffer(tmp_path):
    tasks = corpus_tasks(40)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(tasks, ensure_ascii=False, indent=2))
    for chunk in (7, 64, 1 << 20):  # items and numbers cut by the buffer's end, and read whole
        assert [task for _, task in read_json_array(path, chunk=chunk)] == tasks
    starts = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if line == "  {"]
    for chunk in (50, 1 << 20):  # each task named by its index and the line it starts on
        assert [w for w, _ in read_json_array(path, chunk=chunk)] == [f"{path}: tasks[{i}] (line {n})"
                                                                       for i, n in enumerate(starts)]


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_finished_shard(dense_index_dir, tmp_path):
    tasks = corpus_tasks(600)
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    def command(out="out", shard_size="2"):
        return [sys.executable, "-m", "clinlinker.cli", "annotate", str(tmp_path / "tasks.json"), "--index",
                str(dense_index_dir), "--out", str(tmp_path / out), "--shard-size", shard_size]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done_dir = tmp_path / "out" / "work" / "out"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(done_dir.glob("*.done"))) < 20 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in done_dir.glob("*.done")}
    assert 20 <= len(finished) < 300, len(finished)  # killed midway
    assert not (tmp_path / "out" / "tasks.json").exists()
    resumed = subprocess.run(command(), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming the run" in resumed.stderr
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in finished.items())  # finished shards not redone
    clean = subprocess.run(command("clean"), env=env, capture_output=True,
                           text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr[-2000:]
    for name in ("tasks.json", "links.tsv", "candidates.jsonl"):
        assert (tmp_path / "out" / name).read_text() == (tmp_path / "clean" / name).read_text()
    # the same work directory with other settings is refused, not mixed
    other = subprocess.run(command(shard_size="3"), env=env, capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and "--restart" in other.stderr
