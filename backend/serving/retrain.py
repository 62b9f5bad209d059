"""Background fine-tuning: after N new accepted links, or on Label Studio's "Start training" (/train).

One job at a time per data directory (a file lock): it writes the accepted links to a TSV and runs
`clinlinker retrain` in a child process (its own CPU threads, `nice`d, killed after CLINLINKER_TRAIN_TIMEOUT),
which fine-tunes the serving index's model and re-encodes the index into CLINLINKER_DATA_DIR/models/<id>/; when
the index records a re-ranker, that is trained further too (hard negatives from the new first stage; a lexical
index with a re-ranker gets only that), unless CLINLINKER_TRAIN_RERANKER=0 or CLINLINKER_RERANKER names one.
Only a finished index is published (store meta `current_index`); every backend process then loads it in the
background and swaps it in whole (model_version changes). A failed, killed or interrupted job leaves the old
model serving and says why in the log and in /health ("training").
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

from clinlinker.links import Link, write_links

from backend.serving.model import CURRENT_INDEX
from backend.records.store import reviewed

log = logging.getLogger(__name__)
TRAINING = "training"  # store meta key: the last job's state, shown by /health in every process
TRAINED_AT = "trained_links"  # store meta key: accepted links counted when the last job started


class Retrainer:
    def __init__(self, model, store, config):
        self.model = model
        self.store = store
        self.config = config
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        state = self.state()
        if state.get("status") == "running" and state.get("host") == socket.gethostname() \
                and not _alive(state.get("pid")):
            self._publish({**state, "status": "failed", "finished": _now(),
                           "error": "interrupted: the backend process running it ended; the old model kept serving"})

    # --- state --------------------------------------------------------------------------------

    def state(self) -> dict:
        raw = self.store.get_meta(TRAINING)
        return json.loads(raw) if raw else {"status": "never"}

    def _publish(self, state: dict) -> None:
        self.store.set_meta(TRAINING, json.dumps(state))

    def unavailable(self) -> str | None:
        serving = self.model.serving
        if serving.index_dir is None:
            return "the demo gazetteer is served on the lexical engine: there is no model to fine-tune"
        if serving.linker.index.engine == "lexical" and not self._trains_reranker():
            return "a lexical (char-ngrams) index has no model to fine-tune; the learned terms still apply"
        return None

    def _trains_reranker(self) -> bool:
        """The serving index's recorded re-ranker is trained further (CLINLINKER_TRAIN_RERANKER, on by default).
        A re-ranker given by CLINLINKER_RERANKER is the operator's pick: it is not replaced."""
        from clinlinker.search.index import read_manifest

        serving = self.model.serving
        if not self.config.train_reranker or self.config.reranker or serving.index_dir is None:
            return False
        try:
            return bool(read_manifest(serving.index_dir).get("reranker"))
        except Exception:  # noqa: BLE001 - an unreadable manifest: the job itself will say so
            return False

    # --- triggers -----------------------------------------------------------------------------

    def links_changed(self) -> None:
        every = self.config.retrain_every
        if not every or self.unavailable():
            return
        done = int(self.store.get_meta(TRAINED_AT) or 0)
        if self.store.accepted_count() - done >= every:
            self.request(f"{every} new accepted links")

    def request(self, reason: str) -> dict:
        why_not = self.unavailable()
        if why_not:
            log.info("training requested (%s) but not possible: %s", reason, why_not)
            return {"status": "unavailable", "reason": why_not}
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return {"status": "running", "reason": "a fine-tuning job is already running"}
            self._thread = threading.Thread(target=self._run, args=(reason,), name="clinlinker-retrain", daemon=True)
            self._thread.start()
        return {"status": "started", "reason": reason}

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the job ------------------------------------------------------------------------------

    def _run(self, reason: str) -> None:
        root = self.config.data_path
        lock = open(root / "retrain.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("training requested (%s): another backend process is already fine-tuning", reason)
            lock.close()
            return
        serving = self.model.serving
        job = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        out = root / "models" / job
        links = [row for row in self.store.accepted_links()  # what coders reviewed, as for the learned terms
                 if reviewed(row.get("origin"), self.config.learn_untouched)]
        state = {"status": "running", "reason": reason, "job": job, "started": _now(), "host": socket.gethostname(),
                 "pid": os.getpid(), "from_version": serving.model_version, "links": len(links)}
        try:
            self.store.set_meta(TRAINED_AT, str(self.store.accepted_count()))  # the trigger counts them all
            self._publish(state)
            out.mkdir(parents=True, exist_ok=True)
            tsv = out / "accepted_links.tsv"
            write_links([_link(row, i) for i, row in enumerate(links, start=1)], tsv)
            log.warning("fine-tuning started (%s): %d accepted links, from %s; the current model keeps serving",
                        reason, len(links), serving.model_version)
            cmd = [sys.executable, "-m", "clinlinker.cli", "retrain", "--index", str(serving.index_dir),
                   "--links", str(tsv), "--out", str(out), "--max-steps", str(self.config.train_max_steps),
                   "--max-seconds", str(self.config.train_max_seconds), "--threads", str(self.config.train_threads),
                   "--lr", str(self.config.train_lr)]
            if not self._trains_reranker():
                cmd.append("--no-reranker")
            if self.config.routing:
                cmd += ["--routing", self.config.routing]
            with open(out / "train.log", "w") as logfile:
                self._proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT,
                                              preexec_fn=lambda: os.nice(10))
                try:
                    code = self._proc.wait(timeout=self.config.train_timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                    raise RuntimeError(f"killed after CLINLINKER_TRAIN_TIMEOUT={self.config.train_timeout:g} s")
            if code != 0:
                tail = (out / "train.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"clinlinker retrain exited with {code}: {' | '.join(tail)}")
            index_dir = str(out / "index")
            version = self.model.swap(self.model.load_index(index_dir), index_dir)
            self.store.set_meta(CURRENT_INDEX, json.dumps({"index_dir": index_dir, "base_index":
                                                           self.config.index_dir, "model_version": version}))
            self._publish({**state, "status": "done", "finished": _now(), "model_version": version})
        except Exception as exc:  # noqa: BLE001 - the old model keeps serving; say why
            log.error("fine-tuning failed (%s); still serving %s", exc, self.model.model_version)
            self._publish({**state, "status": "failed", "finished": _now(), "error": str(exc)[:2000]})
            shutil.rmtree(out / "index", ignore_errors=True)
        finally:
            self._proc = None
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()


def _link(row: dict, i: int) -> Link:
    return Link(filename=str(row.get("filename") or f"task-{row.get('task')}"), mark=f"T{i}",
                label=str(row.get("label") or ""), start=int(row.get("start") or 0), end=int(row.get("end") or 0),
                span=str(row.get("span") or ""), code=str(row.get("code") or ""),
                semantic_rel=str(row.get("semantic_rel") or ""))


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
