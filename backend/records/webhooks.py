"""Webhook intake: Label Studio's events checked at the door and turned into facts for the store.

Only Label Studio's documented actions are accepted (anything else is a 400 naming `action`); an annotation event
must carry an annotation whose shape we can read (a 400 names the field otherwise), so that nothing accepted can
fail later. The backend stores the fact before it answers; there is no queue to lose or to replay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from backend.labelstudio.export import annotation_links
from backend.labelstudio.regions import result_problem

log = logging.getLogger(__name__)

# Label Studio's webhook actions (label_studio/webhooks/models.py, 1.23) plus the ML backend's training request
SAVED = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
DELETED = ("ANNOTATIONS_DELETED", "ANNOTATION_DELETED")
TRAINING = ("START_TRAINING",)
IGNORED = ("PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED", "TASKS_CREATED", "TASKS_DELETED",
           "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED", "REVIEW_CREATED", "REVIEW_UPDATED",
           "REVIEWS_DELETED")
ACTIONS = SAVED + DELETED + TRAINING + IGNORED
MAX_ID_CHARS = 64


class WebhookError(ValueError):
    """A webhook body we cannot accept; the message names the field (e.g. annotation.result[2].value)."""


@dataclass
class Version:
    """One version of one annotation, ready to store."""

    project: str
    task: str
    annotation: str
    updated_at: object
    cancelled: bool
    body: dict
    links: list[dict]
    problems: list[str] = field(default_factory=list)


@dataclass
class Deletion:
    project: str
    task: str | None
    annotation: str


def _id(value, where: str, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise WebhookError(f"{where}: missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise WebhookError(f"{where}: expected an id (integer or string), got {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_ID_CHARS:
        raise WebhookError(f"{where}: an id of {len(text)} characters (at most {MAX_ID_CHARS})")
    return text


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise WebhookError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _project(data: dict, annotation: dict | None = None) -> str:
    project = data.get("project")
    if isinstance(project, dict):
        return _id(project.get("id"), "project.id")
    if project is not None:
        return _id(project, "project")
    return _id((annotation or {}).get("project"), "project.id (or annotation.project)")


def _is_time(value) -> bool:
    from datetime import datetime

    if not isinstance(value, str) or not value or len(value) > 64:
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _version(data: dict, annotation: dict, task, where: str, *, doc_field: str, labels) -> Version:
    project = _project(data, annotation)
    annotation_id = _id(annotation.get("id"), f"{where}.id")
    if isinstance(task, dict):
        task_id = _id(task.get("id") if task.get("id") is not None else annotation.get("task"), "task.id")
        task_data = task.get("data")
        if task_data is not None and not isinstance(task_data, dict):
            raise WebhookError(f"task.data: expected an object, got {type(task_data).__name__}")
    else:
        task_id = _id(task if task is not None else annotation.get("task"), f"{where}.task")
        task_data = None
    if annotation.get("result") is not None:
        problem = result_problem(annotation["result"], f"{where}.result")
        if problem:
            raise WebhookError(problem)
    updated_at = annotation.get("updated_at")
    if updated_at is not None and not _is_time(updated_at):  # never guessed: the newest version wins on it
        raise WebhookError(f"{where}.updated_at: expected a time such as 2026-11-25T23:50:31.806359Z")
    minimal_task = {"id": task.get("id") if isinstance(task, dict) else task_id, "data": task_data or {}}
    cancelled = bool(annotation.get("was_cancelled"))
    links, problems = ([], []) if cancelled else annotation_links(minimal_task, annotation, doc_field=doc_field,
                                                                  labels=labels)
    keep = {k: annotation[k] for k in ("id", "result", "was_cancelled", "ground_truth", "created_at", "updated_at",
                                       "lead_time", "completed_by", "updated_by", "task", "project") if k in annotation}
    return Version(project, task_id, annotation_id, updated_at, cancelled, {"task": minimal_task, "annotation": keep},
                   links, [str(p) for p in problems])


def parse(data: dict, *, doc_field: str = "doc_id", labels=None) -> tuple[str, list]:
    """(action, facts) of a webhook body: Versions, Deletions, or nothing (training and ignored actions)."""
    action = data.get("action")
    if not isinstance(action, str) or not action:
        raise WebhookError("action: expected the webhook action name")
    if action not in ACTIONS:
        shown = action[:60] + ("…" if len(action) > 60 else "")
        raise WebhookError(f"action: {shown!r} is not a Label Studio webhook action")
    if action in SAVED:
        annotations = data.get("annotation")
        if action == "ANNOTATIONS_CREATED" and data.get("annotations") is not None:
            annotations = data.get("annotations")
        where = "annotation" if isinstance(annotations, dict) else ("annotations" if "annotations" in data
                                                                    else "annotation")
        if isinstance(annotations, dict):
            annotations = [annotations]
        if not isinstance(annotations, list) or not annotations:
            raise WebhookError(f"{where}: expected the annotation object")
        tasks = data.get("task")
        facts = []
        for i, annotation in enumerate(annotations):
            here = where if len(annotations) == 1 and where == "annotation" else f"{where}[{i}]"
            annotation = _object(annotation, here)
            task = tasks[i] if isinstance(tasks, list) and i < len(tasks) else tasks
            if isinstance(tasks, list) and isinstance(task, dict) and task.get("id") is not None \
                    and annotation.get("task") is not None and str(task.get("id")) != str(annotation.get("task")):
                task = next((t for t in tasks if isinstance(t, dict) and str(t.get("id")) == str(annotation["task"])),
                            annotation.get("task"))
            if task is not None and not isinstance(task, (dict, int, str)):
                raise WebhookError(f"task: expected the task object, got {type(task).__name__}")
            facts.append(_version(data, annotation, task, here, doc_field=doc_field, labels=labels))
        return action, facts
    if action in DELETED:
        items = data.get("annotations")
        where = "annotations"
        if items is None and data.get("annotation") is not None:
            items, where = [data.get("annotation")], "annotation"
        if not isinstance(items, list):
            raise WebhookError(f"{where}: expected the list of deleted annotations")
        facts = []
        for i, item in enumerate(items):
            here = f"{where}[{i}]" if where == "annotations" else where
            item = _object(item, here)
            facts.append(Deletion(_project(data, item), _id(item.get("task"), f"{here}.task", required=False),
                                  _id(item.get("id"), f"{here}.id")))
        return action, facts
    return action, []


def intake(store, data: dict, *, doc_field: str, labels) -> dict:
    """Check one webhook body and store its facts before answering: `{"action", "outcomes": {outcome: n}}`.
    Raises WebhookError naming the field; nothing of a refused body is stored."""
    action, facts = parse(data, doc_field=doc_field, labels=labels)
    outcomes: dict = {}
    for fact in facts:
        if isinstance(fact, Deletion):
            applied = store.delete_annotation(fact.project, fact.task, fact.annotation, counter=f"webhook|{action}")
        else:
            for problem in fact.problems:
                log.warning("annotation %s of project %s: %s (not learned)", fact.annotation, fact.project, problem)
            applied = store.apply_annotation(fact.project, fact.task, fact.annotation, updated_at=fact.updated_at,
                                             body=fact.body, links=fact.links, cancelled=fact.cancelled,
                                             counter=f"webhook|{action}")
        outcomes[applied.outcome] = outcomes.get(applied.outcome, 0) + 1
    if not facts:
        store.count(f"webhook|{action}|received")
    return {"action": action, "outcomes": outcomes}
