"""`clinlinker annotate` on Ray: a local cluster started and stopped by the test, and a two-node cluster on the
loopback (`ray start --head` plus a second node, token authentication on), both giving the local run's output (scores
to 1e-4); a killed Ray run resumes."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from backend.jobs.annotate import AnnotateSettings, annotate
from clinlinker.search.index import build_index, save_index
from tests.backend.test_annotate import corpus_tasks, without_scores
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, demo_kb, tiny_encoder):
    root = tmp_path_factory.mktemp("annotate-ray")
    index_dir = save_index(build_index(demo_kb, tiny_encoder), root / "ix")
    (root / "tasks.json").write_text(json.dumps(corpus_tasks(60)))
    local = annotate([str(root / "tasks.json")], root / "local", AnnotateSettings(index=str(index_dir)),
                     shard_size=7, chunk_size=5, show_progress=False)
    assert local["shards"] == 9 and local["ray_used"] is None
    return root, index_dir


def same_outputs(a: Path, b: Path) -> None:
    """The same tasks, spans, codes and order; scores equal to 1e-4 (an actor with another number of threads sums
    floats in another order: the last printed digit of a score may differ, nothing else)."""
    assert (a / "links.tsv").read_text() == (b / "links.tsv").read_text()
    assert without_scores(json.loads((a / "tasks.json").read_text())) == without_scores(
        json.loads((b / "tasks.json").read_text()))
    read = lambda p: [json.loads(line) for line in p.read_text().splitlines()]  # noqa: E731
    assert without_scores(read(a / "candidates.jsonl")) == without_scores(read(b / "candidates.jsonl"))


def ray_env(token_file: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file),
            "RAY_USAGE_STATS_ENABLED": "0"}


def test_a_local_ray_cluster_gives_the_local_output(corpus, tmp_path):
    root, index_dir = corpus
    try:
        summary = annotate([str(root / "tasks.json")], tmp_path / "ray", AnnotateSettings(index=str(index_dir)),
                           shard_size=7, chunk_size=5, use_ray=True, workers=2, show_progress=False)
    finally:
        ray.shutdown()
    # one pool of (at most) two actors did both steps, each actor loading the model once
    used = summary["ray_used"]
    assert used["nodes"] == 1 and set(used["per_step"]) == {"encode", "link"} and 1 <= used["actors"] <= 2
    assert used["workers"] == 2
    same_outputs(root / "local", tmp_path / "ray")


@pytest.mark.parametrize("workers, cpus, gpus, items, expected", [
    (None, 1.0, 0.0, 100, 8),  # the cluster's 8 CPUs, one actor each
    (None, 2.0, 0.0, 100, 4),
    (None, 1.0, 1.0, 100, 2),  # GPU actors: as many as its GPUs
    (None, 1.0, 1.0, 1, 1),  # never more actors than work items
    (3, 1.0, 0.0, 100, 3),  # --workers as given
    (None, 16.0, 0.0, 100, 1),  # never fewer than one
])
def test_the_actor_pool_fills_the_cluster_unless_told(workers, cpus, gpus, items, expected):
    from clinlinker.encode.ray import pool_size

    assert pool_size(workers, {"CPU": 8.0, "GPU": 2.0}, cpus, gpus, items) == expected


@pytest.fixture
def loopback_cluster(tmp_path):
    """A head and a second node, one CPU each, on 127.0.0.1; token authentication with a token of this test."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    env = ray_env(token)
    port = 20000 + secrets.randbelow(20000)
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    try:
        for args in (["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"],
                     [f"--address=127.0.0.1:{port}"]):
            done = subprocess.run([ray_bin, "start", "--num-cpus=1", "--disable-usage-stats", *args], env=env,
                                  capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, done.stderr[-2000:]
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_two_node_loopback_cluster_gives_the_local_output_and_resumes(corpus, tmp_path, loopback_cluster):
    root, index_dir = corpus
    address, env = loopback_cluster
    command = [sys.executable, "-m", "clinlinker.cli", "annotate", str(root / "tasks.json"), "--index",
               str(index_dir), "--out", str(tmp_path / "ray"), "--shard-size", "2", "--chunk-size", "5",
               "--ray-address", address]  # no --workers: as many one-CPU actors as the cluster holds (2)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["ray_used"]["workers"] == 2  # was 1 by default: one node of the two left idle
    assert summary["ray_used"]["nodes"] == 2 and summary["ray_used"]["actors"] == 2  # one actor on each node
    same_outputs(root / "local", tmp_path / "ray")  # shards of 2 tasks, not 7: each task is answered alone

    # killed midway (the driver, SIGKILL), then run again: it continues from the finished shards
    killed = command[:command.index("--out") + 1] + [str(tmp_path / "again")] + command[command.index("--out") + 2:]
    killed[killed.index("--shard-size") + 1] = "1"
    log = tmp_path / "killed.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(killed, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    out = tmp_path / "again" / "work" / "out"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and len(list(out.glob("*.done"))) < 3 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, log.read_text()[-3000:]  # still running: killed midway, not after
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*.done")}
    assert 3 <= len(finished) < 60, (len(finished), log.read_text()[-3000:])
    resumed = subprocess.run(killed, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the run" in resumed.stderr
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in finished.items())
    same_outputs(root / "local", tmp_path / "again")  # each task is answered alone, its vectors from the chunks
    shutil.rmtree(tmp_path / "again" / "work")
