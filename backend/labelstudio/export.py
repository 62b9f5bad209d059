"""From Label Studio's full JSON export to the shared-task linking TSV.

For each task, the latest non-cancelled annotation; for each of its spans, one row:
`filename mark label off0 off1 span code semantic_rel`. The code of a span is, in order:
the code typed in its TextArea (a code, `A+B`, or NO_CODE), else the candidate(s) ticked under
ITS OWN mention node in the Taxonomy (two or more ticked -> a composite `A+B`). A candidate
ticked under another mention, or a span without any code, is reported and not exported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from clinlinker.errors import ClinlinkerError, InputFileError
from clinlinker.links import Link

from backend.labelstudio.regions import code_of, group_regions, mention_node, node_offsets, span_regions


@dataclass
class Problem:
    task: object
    region: str | None
    message: str

    def __str__(self) -> str:
        where = f"task {self.task}" + (f", region {self.region}" if self.region else "")
        return f"{where}: {self.message}"


@dataclass
class Agreement:
    """How often the coder kept the backend's pre-selected top-1 candidate, and how each code was given."""

    compared: int = 0
    kept_top1: int = 0
    # Label Studio's origin of each exported code: prediction (left as pre-annotated), prediction-changed,
    # manual (drawn or typed by the coder), "" (not recorded, e.g. older exports)
    origins: dict = field(default_factory=dict)


def latest_annotation(task: dict) -> dict | None:
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not annotations:
        return None
    return max(annotations, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def _filename(task: dict, doc_field: str) -> str:
    data = task.get("data") or {}
    value = data.get(doc_field)
    name = str(value) if value not in (None, "") else f"task-{task.get('id')}"
    return name[:-4] if name.endswith(".txt") else name


def annotation_links(task: dict, annotation: dict, *, doc_field: str = "doc_id",
                     labels: tuple[str, ...] | None = None) -> tuple[list[dict], list[Problem]]:
    """Rows (as dicts, with the region id) for one annotation, and the problems found."""
    task_id = task.get("id")
    links, problems = [], []
    grouped = group_regions(annotation.get("result") or [])
    for region in grouped:  # a code on a span that lost its label is never dropped silently
        if region.label is None and region.has_code_item:
            where = f"span {region.text!r} ({region.start}-{region.end})" if region.start is not None else "a region"
            codes = [code_of(t) for t in region.typed] + [code_of(p[-1]) for p in region.taxonomy if p] + \
                [code_of(c) for c in region.picked]
            problems.append(Problem(task_id, region.id, f"{where} has a code ({'+'.join(c for c in codes if c)}) "
                                                        "but no label: give it its label in Label Studio"))
    regions = sorted((r for r in grouped if r.label is not None and r.start is not None),
                     key=lambda r: (r.start, r.end, r.id))
    filename = _filename(task, doc_field)
    for region in regions:
        if labels and region.label not in labels:
            continue
        text = region.text if region.text is not None else ((task.get("data") or {}).get("text") or "")[
            region.start:region.end]
        own = mention_node(text, region.start, region.end, region.label)
        code = None
        if region.typed:
            codes = [code_of(t) for t in region.typed]
            if any(c is None for c in codes):
                problems.append(Problem(task_id, region.id, f"typed code {region.typed!r} is not a code, "
                                                            "A+B or NO_CODE"))
                continue
            code = "+".join(codes)
        else:
            ticked = []
            for path in region.taxonomy:
                if len(path) < 2:
                    problems.append(Problem(task_id, region.id, f"the mention node {path!r} was ticked instead "
                                                                "of a candidate under it"))
                    continue
                # the leaf's parent must be this span (its offsets: older lists showed no label); mentions drawn
                # after the task opened sit one level down in the picker
                if path[-2] != own and node_offsets(path[-2]) != (region.start, region.end):
                    problems.append(Problem(task_id, region.id, f"candidate {path[-1]!r} was ticked under "
                                                                f"another mention ({path[-2]!r}), not {own!r}"))
                    continue
                ticked.append(code_of(path[-1]))
            ticked += [code_of(choice) for choice in region.picked]
            ticked = [c for c in dict.fromkeys(ticked) if c]
            code = "+".join(ticked) if ticked else None
        if not code:
            problems.append(Problem(task_id, region.id, f"span {text!r} ({region.start}-{region.end}, "
                                                        f"{region.label}) has no code"))
            continue
        relation = region.relation or ("COMPOSITE" if "+" in code else "")
        links.append({"region": region.id, "filename": filename, "label": region.label, "start": region.start,
                      "end": region.end, "span": text, "code": code, "semantic_rel": relation,
                      "origin": region.code_origin or ""})
    return links, problems


def export_tasks(tasks: list, *, doc_field: str = "doc_id", labels: tuple[str, ...] | None = None):
    """All rows of a full JSON export: (links, problems, agreement)."""
    if isinstance(tasks, dict) and "annotations" in tasks:
        tasks = [tasks]  # a single exported task
    if not isinstance(tasks, list):
        raise ClinlinkerError("a Label Studio JSON export is a list of tasks (use export type JSON, not JSON_MIN)")
    rows: list[Link] = []
    problems: list[Problem] = []
    agreement = Agreement()
    for task in tasks:
        if not isinstance(task, dict):
            problems.append(Problem("?", None, "not a task object"))
            continue
        annotation = latest_annotation(task)
        if annotation is None:
            continue
        links, found = annotation_links(task, annotation, doc_field=doc_field, labels=labels)
        problems.extend(found)
        top1 = _predicted_top1(task)
        for mark, link in enumerate(links, start=1):
            rows.append(Link(link["filename"], f"T{mark}", link["label"], link["start"], link["end"], link["span"],
                             link["code"], link["semantic_rel"]))
            agreement.origins[link["origin"]] = agreement.origins.get(link["origin"], 0) + 1
            predicted = top1.get((link["start"], link["end"]))
            if predicted is not None:
                agreement.compared += 1
                agreement.kept_top1 += predicted == link["code"]
    return rows, problems, agreement


def _predicted_top1(task: dict) -> dict:
    """(start, end) -> the code the latest prediction pre-selected."""
    predictions = [p for p in task.get("predictions") or [] if isinstance(p, dict)]
    if not predictions:
        return {}
    latest = max(predictions, key=lambda p: (str(p.get("created_at") or ""), p.get("id") or 0))
    out = {}
    for region in span_regions(latest.get("result") or []):
        if region.taxonomy and len(region.taxonomy[0]) >= 2:
            out[(region.start, region.end)] = code_of(region.taxonomy[0][-1])
    return out


def read_export(path) -> list:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise InputFileError(path, None, f"cannot open: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputFileError(path, None, "not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(path, exc.lineno, f"not valid JSON ({exc.msg}, column {exc.colno})") from None


def fetch_export(url: str, token: str, project: int, timeout: float = 300.0) -> list:
    """Pull a project's full JSON export (and its predictions) from a Label Studio server."""
    from backend.labelstudio.api import LabelStudio

    ls = LabelStudio(url, token, timeout=timeout)
    tasks = ls.export(project)
    # The export lists prediction ids only; fetch them to measure agreement with the pre-annotations.
    by_id = {p.get("id"): p for p in ls.predictions(project) if isinstance(p, dict)}
    for task in tasks:
        task["predictions"] = [by_id.get(p, p) if not isinstance(p, dict) else p for p in task.get("predictions") or []]
    return tasks
