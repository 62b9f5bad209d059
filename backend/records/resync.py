"""Resync from the source of truth: a project's accepted links rebuilt from Label Studio's annotations.

Label Studio holds the coders' work. Whatever the backend missed (an outage, a webhook Label Studio never sent, a
deleted backend database), `clinlinker sync` or `POST /sync` pulls the project's full export and makes the store
say exactly what Label Studio says: every annotation at Label Studio's version, those Label Studio no longer has
deleted. The report says what differed.
"""

from __future__ import annotations

import logging

from clinlinker.errors import ClinlinkerError

from backend.labelstudio.export import fetch_export
from backend.records.webhooks import WebhookError, parse

log = logging.getLogger(__name__)


def resync_project(store, config, url: str, token: str, project: str, timeout: float = 300.0) -> dict:
    try:
        number = int(project)
    except ValueError:
        raise ClinlinkerError(f"project {project!r}: expected Label Studio's numeric project id") from None
    tasks = fetch_export(url, token, number, timeout=timeout)
    return resync_tasks(store, config, str(project), tasks)


def resync_tasks(store, config, project: str, tasks: list) -> dict:
    before = store.annotation_states(project)
    report = {"project": project, "tasks": len(tasks), "annotations": 0, "added": 0, "changed": 0, "unchanged": 0,
              "removed": 0, "refused": []}
    seen = set()
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            report["refused"].append(f"task #{i + 1}: not an object")
            continue
        for annotation in task.get("annotations") or []:
            if not isinstance(annotation, dict):
                continue
            body = {"action": "ANNOTATION_UPDATED", "project": {"id": project}, "task": task,
                    "annotation": {**annotation, "task": task.get("id")}}
            try:
                _, [version] = parse(body, doc_field=config.doc_field, labels=config.labels)
            except WebhookError as exc:
                report["refused"].append(f"task {task.get('id')}, annotation {annotation.get('id')}: {exc}")
                continue
            report["annotations"] += 1
            key = (version.task, version.annotation)
            seen.add(key)
            applied = store.apply_annotation(version.project, version.task, version.annotation,
                                             updated_at=version.updated_at, body=version.body, links=version.links,
                                             cancelled=version.cancelled, force=True, counter="sync|annotation")
            state = before.get(key)
            if state is None or state[0] == "deleted":
                report["added"] += 1
            elif applied.changes:
                report["changed"] += 1
            else:
                report["unchanged"] += 1
    for (task, annotation), (state, _) in before.items():
        if state != "deleted" and (task, annotation) not in seen:
            store.delete_annotation(project, task, annotation, counter="sync|annotation")
            report["removed"] += 1
    log.warning("resync of project %s from Label Studio: %s", project,
                {k: v for k, v in report.items() if k != "refused"} | {"refused": len(report["refused"])})
    return report
