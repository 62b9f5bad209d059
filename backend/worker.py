"""Consumes the event log: keeps the links coders accepted, counts training requests.

Runs as a daemon thread inside each backend process (events are claimed atomically, so
several processes never handle one event twice). Accepted links are stored (see `clinlinker export`
for the same conversion on a full export); they feed the learned-terms layer at once, and a
background fine-tuning (backend/retrain.py) after N of them or on a training request.
"""

from __future__ import annotations

import logging
import threading

from backend.export import annotation_links

log = logging.getLogger(__name__)

ANNOTATION_SAVED = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}
ANNOTATION_GONE = {"ANNOTATION_DELETED", "ANNOTATIONS_DELETED"}


class EventWorker:
    def __init__(self, store, *, doc_field: str = "doc_id", labels=None, interval: float = 0.5, retrainer=None):
        self.store = store
        self.retrainer = retrainer
        self.doc_field = doc_field
        self.labels = tuple(labels) if labels else None
        self.interval = interval
        self.training_requests = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "EventWorker":
        self._thread = threading.Thread(target=self._run, name="clinlinker-events", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.run_once()
            except Exception:  # noqa: BLE001 - the worker must survive a bad event or a store hiccup
                log.exception("event worker iteration failed")
                handled = 0
            if not handled:
                self._stop.wait(self.interval)

    def run_once(self) -> int:
        events = self.store.claim_events()
        for event_id, action, body in events:
            try:
                self.handle(action, body)
                self.store.finish_event(event_id, action=action)
            except Exception as exc:  # noqa: BLE001 - record and go on
                log.warning("event %s (%s) failed: %s", event_id, action, exc)
                self.store.finish_event(event_id, error=f"{type(exc).__name__}: {exc}", action=action)
        return len(events)

    def handle(self, action: str, body: dict) -> None:
        if action in ANNOTATION_SAVED:
            annotation = body.get("annotation") or {}
            task = body.get("task") or {}
            project = str((body.get("project") or {}).get("id") or annotation.get("project") or "")
            task_id = str(task.get("id") or annotation.get("task") or "")
            if annotation.get("was_cancelled"):
                self.store.delete_links(project, task_id)
                return
            links, problems = annotation_links(task, annotation, doc_field=self.doc_field, labels=self.labels)
            for problem in problems:
                log.warning("annotation %s of project %s: %s (not learned)", annotation.get("id"), project, problem)
            self.store.replace_links(project, task_id, str(annotation.get("id")), links)
            if self.retrainer is not None:
                self.retrainer.links_changed()
        elif action in ANNOTATION_GONE:
            project = str((body.get("project") or {}).get("id") or "")
            for annotation in body.get("annotations") or ([body.get("annotation")] if body.get("annotation") else []):
                self.store.delete_links(project, str(annotation.get("task")), str(annotation.get("id")))
        elif action in ("START_TRAINING", "TRAIN"):
            self.training_requests += 1
            if self.retrainer is not None:
                self.retrainer.request("training requested from Label Studio")
