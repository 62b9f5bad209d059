"""The model object Label Studio talks to, with the familiar ML-backend method names:
`setup()`, `predict(tasks, context)`, `fit(event, data)`.

It turns each task's spans into mentions, asks the linker for k distinct candidates per
mention, and answers with Label Studio result items (see `regions.py` for node names).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass

from clinlinker.search.candidates import certainty
from clinlinker.linking.linker import Linker

from backend.labelstudio.label_config import LabelConfig, parse_label_config
from backend.labelstudio.regions import NO_CODE_LEAF, Region, leaf_of, mention_node, result_problem, span_regions

log = logging.getLogger(__name__)


class PayloadError(ValueError):
    """A malformed request: the message names the field (e.g. tasks[2].data.mentions[0].end)."""


class TooMuchWork(PayloadError):
    """More work in one request than the settings allow (a 413 that names the setting)."""


def check_result(result, where: str) -> None:
    """A result list we can read, or a PayloadError naming the field (regions.result_problem)."""
    problem = result_problem(result, where)
    if problem:
        raise PayloadError(problem)


@dataclass
class Span:
    region_id: str
    start: int
    end: int
    text: str
    label: str
    emit_label: bool  # the answer carries the span's labels item (always: Label Studio replaces the region whole)


@dataclass(frozen=True)
class Serving:
    """What answers a request: read once per request, replaced whole by a hot swap (never half of it)."""

    linker: Linker
    model_version: str
    index_dir: str | None


def model_version_of(linker: Linker, top_k: int) -> str:
    manifest = getattr(linker.index, "manifest", {}) or {}
    routing = linker.routing
    parts = sorted((label, part.tags, part.roots, part.untagged) for label, part in routing.parts.items())
    reranker = linker.reranker.describe() if getattr(linker, "reranker", None) is not None else None
    digest = hashlib.sha256(repr((manifest.get("fingerprint"), manifest.get("created"), manifest.get("terms"),
                                  top_k, parts, routing.inherit, routing.untagged, reranker)).encode()).hexdigest()[:10]
    return f"clinlinker-{linker.index.engine}{'-reranked' if reranker else ''}-{digest}"


def keep_out_of_collector(again: bool = False) -> None:
    """Move what the process holds now (the loaded knowledge base and index: 77k concept objects for the public
    gazetteers) out of the garbage collector's reach. A full collection walks every tracked object and comes every
    few hundred requests, paid by whichever request triggers it: ~90 ms with that knowledge base on 2 cores
    (bench/gc_pause.py), the predict p99 outliers of the fault campaign. again: after a swap, first give the
    collector back what was kept out, so that the model served before can be freed."""
    if again:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


CURRENT_INDEX = "current_index"  # store meta key: the fine-tuned index every process should serve


class ClinLinkerModel:
    def __init__(self, linker: Linker, config, store=None, *, layers=None, index_dir=None, load_index=None):
        self.config = config
        self.store = store  # the store of record (backend/records/store.py): candidate lists, accepted links, meta
        self.layers = layers  # LearnedLayers: each project's learned terms, following the accepted links
        self.load_index = load_index  # directory -> Linker, for following a fine-tuned index
        self._follow = {"checked": 0.0, "loading": None, "failed": {}}
        self.serving = Serving(linker, model_version_of(linker, config.top_k), index_dir)
        # One request's candidates are computed at a time per process: the computation holds the GIL (or, dense,
        # all cores), so several at once only interleave; waiting here instead leaves the GIL to the webhooks and
        # picker requests the same process answers meanwhile (bench/concurrency.py: their p99 under load).
        self._compute = threading.Lock()

    @property
    def linker(self) -> Linker:
        return self.serving.linker

    @property
    def model_version(self) -> str:
        return self.serving.model_version

    # --- learning while serving ---------------------------------------------------------------

    def sync_learned(self, serving: Serving | None = None) -> None:
        """Apply the accepted links committed since the last call (by any process) to the learned terms."""
        if self.layers is not None:
            self.layers.sync((serving or self.serving).linker)

    def learned_for(self, project: str | None, serving: Serving | None = None):
        """The project's learned terms for the linker that answers (never another linker's: other vectors)."""
        if self.layers is None:
            return None
        return self.layers.layer(project, (serving or self.serving).linker)

    def swap(self, linker: Linker, index_dir: str | None) -> str:
        """Serve `linker` from now on. Requests already running finish on the old one."""
        serving = Serving(linker, model_version_of(linker, self.config.top_k), index_dir)
        self.sync_learned(serving)  # learned terms ready before the first request sees it
        old, self.serving = self.serving, serving
        log.warning("now serving %s (%s), was %s", serving.model_version, index_dir, old.model_version)
        version = serving.model_version
        del old, serving
        if gc.get_freeze_count():  # this process keeps its model out of the collector (serve_app): the new one too
            keep_out_of_collector(again=True)
        return version

    def follow(self, force: bool = False) -> None:
        """Load in the background the fine-tuned index another process published, then swap to it."""
        if self.store is None or self.load_index is None:
            return
        now = time.monotonic()
        if not force and now - self._follow["checked"] < 1.0:
            return
        self._follow["checked"] = now
        try:
            published = self.store.get_meta(CURRENT_INDEX)
        except Exception:  # noqa: BLE001
            return
        if not published:
            return
        try:
            target = json.loads(published).get("index_dir")
        except (ValueError, AttributeError):
            log.warning("ignoring an unreadable published index record: %r", published[:200])
            return
        if not target or target == self.serving.index_dir or self._follow["loading"] == target \
                or target in self._follow["failed"]:
            return
        self._follow["loading"] = target

        def load():
            try:
                self.swap(self.load_index(target), target)
            except Exception as exc:  # noqa: BLE001 - keep serving what we have
                self._follow["failed"][target] = f"{type(exc).__name__}: {exc}"
                log.error("cannot load the fine-tuned index %s (%s); still serving %s", target, exc,
                          self.serving.model_version)
            finally:
                self._follow["loading"] = None

        threading.Thread(target=load, name="clinlinker-follow", daemon=True).start()

    # --- Label Studio's API -------------------------------------------------------------------

    def setup(self, project: str | None = None, schema: str | None = None) -> dict:
        if schema:
            parse_label_config(schema, tuple(self.config.labels))  # refuse a config we cannot fill, early
        return {"model_version": self.model_version}

    def predict(self, tasks: list, context: dict | None = None, label_config: str | None = None,
                project: str | None = None) -> list[dict]:
        """One prediction per task, in order: {"model_version", "score", "result"}.

        project: Label Studio's project id: its learned terms are searched and its candidate lists kept.
        """
        cfg = parse_label_config(label_config, tuple(self.config.labels))
        if len(tasks) > self.config.max_tasks:
            raise TooMuchWork(f"tasks: {len(tasks)} tasks in one request, more than the {self.config.max_tasks} "
                              "allowed (CLINLINKER_MAX_TASKS): select fewer tasks per «Retrieve predictions»")
        per_task = [self._spans(i, task, context, cfg) for i, task in enumerate(tasks)]
        total = sum(len(spans) for spans in per_task)
        if total > self.config.max_spans:
            raise TooMuchWork(f"tasks: {total} spans in one request, more than the {self.config.max_spans} allowed "
                              "(CLINLINKER_MAX_SPANS): select fewer tasks per «Retrieve predictions»")
        if not any(per_task):  # e.g. Label Studio's interactive call per coded region after each Submit: answer at once
            return [{"model_version": self.serving.model_version, "score": 0.0, "result": []} for _ in tasks]
        self.follow()
        serving = self.serving  # one model for the whole response, whatever a swap does meanwhile
        self.sync_learned(serving)
        with self._compute:
            answered = self._answer(tasks, per_task, cfg, serving, self.learned_for(project, serving))
        lists = {}
        for task, (_, nodes) in zip(tasks, answered):
            if nodes:
                lists.setdefault(self._doc_key(task, cfg), []).extend(nodes)
        if self.store is not None and lists:
            try:  # one transaction for the whole request, however many documents it holds
                self.store.put_candidate_lists(project or "", lists)
            except Exception as exc:  # noqa: BLE001 - the coder still gets the pre-annotations
                log.error("cannot keep the candidate lists of %s (%s: %s): the picker will not list them",
                          ", ".join(list(lists)[:5]), type(exc).__name__, str(exc).splitlines()[0][:300])
        return [prediction for prediction, _ in answered]

    def predict_offline(self, tasks: list, cfg: LabelConfig, where: str = "tasks") -> list[tuple[dict, list]]:
        """What predict() answers for `tasks` (no project: no learned terms), with each task's spans and candidate
        lists: [(prediction, nodes)] in order. Bulk pre-annotation (backend/jobs/annotate.py) calls this, so that its
        output is the backend's own. No request limits apply; bad tasks raise PayloadError naming `where`[i]."""
        per_task = []
        for i, task in enumerate(tasks):
            try:
                per_task.append(self._spans(i, task, None, cfg))
            except PayloadError as exc:
                raise PayloadError(str(exc).replace("tasks[", f"{where}[", 1)) from None
        return self._answer(tasks, per_task, cfg, self.serving, None)

    def _answer(self, tasks, per_task, cfg, serving, learned) -> list[tuple[dict, list]]:
        mentions = [span.text for spans in per_task for span in spans]
        labels = [span.label for spans in per_task for span in spans]
        # each span's document: the acronyms a case defines ("presión intraocular (PIO)") are read as it defines them
        contexts = [task["data"][cfg.text_field] for task, spans in zip(tasks, per_task) for _ in spans]
        candidates = serving.linker.link(mentions, self.config.top_k, labels=labels, learned=learned,
                                         contexts=contexts) if mentions else []
        out, position = [], 0
        for task, spans in zip(tasks, per_task):
            task_candidates = candidates[position:position + len(spans)]
            position += len(spans)
            out.append(self._prediction(task, spans, task_candidates, cfg, serving.model_version))
        return out

    # --- spans --------------------------------------------------------------------------------

    def _spans(self, i: int, task, context, cfg: LabelConfig) -> list[Span]:
        where = f"tasks[{i}]"
        if not isinstance(task, dict):
            raise PayloadError(f"{where}: expected an object")
        data = task.get("data")
        if not isinstance(data, dict):
            raise PayloadError(f"{where}.data: expected an object")
        text = data.get(cfg.text_field)
        if not isinstance(text, str):
            raise PayloadError(f"{where}.data.{cfg.text_field}: expected the clinical text as a string")
        if len(text) > self.config.max_text_chars:
            raise PayloadError(f"{where}.data.{cfg.text_field}: {len(text)} characters, more than the "
                               f"{self.config.max_text_chars} allowed (CLINLINKER_MAX_TEXT_CHARS)")
        spans = self._task_spans(where, task, data, text, context, cfg)
        if len(spans) > self.config.max_spans_per_task:
            raise TooMuchWork(f"{where}: {len(spans)} spans in one task, more than the {self.config.max_spans_per_task} "
                              "allowed (CLINLINKER_MAX_SPANS_PER_TASK)")
        return spans

    def _task_spans(self, where: str, task: dict, data: dict, text: str, context, cfg: LabelConfig) -> list[Span]:
        task_id = task.get("id")
        if context and isinstance(context, dict) and context.get("result") is not None:
            result = context.get("result")
            check_result(result, "params.context.result")
            regions = [r for r in span_regions(result) if not r.has_code_item]
            # Label Studio replaces the drawn region's items with the answer's: the answer must be the whole
            # region (its label too), or the span is left with "No label" in the coder's browser (Label Studio 1.23)
            return self._from_regions(regions, text, "params.context.result", emit_label=True)
        field = self.config.mentions_field
        if data.get(field) is not None:
            return self._from_data(data[field], text, task_id, data.get(self.config.doc_field), f"{where}.data.{field}")
        for key in ("annotations", "predictions"):
            listed = task.get(key)
            if listed is not None and not isinstance(listed, list):
                raise PayloadError(f"{where}.{key}: expected a list")
            items = [a for a in listed or [] if isinstance(a, dict) and not a.get("was_cancelled")]
            if items:
                latest = max(items, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""),
                                                   str(a.get("id") or "")))
                result = latest.get("result") or []
                check_result(result, f"{where}.{key}[{listed.index(latest)}].result")
                regions = span_regions(result)
                if regions:
                    return self._from_regions(regions, text, f"{where}.{key}", emit_label=True)
        return []

    def _check(self, where: str, start, end, text: str, span_text) -> str:
        if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool):
            raise PayloadError(f"{where}: start and end must be integers")
        if not 0 <= start < end <= len(text):
            raise PayloadError(f"{where}: offsets {start}-{end} outside the text (length {len(text)})")
        actual = text[start:end]
        if span_text is not None and " ".join(str(span_text).split()) != " ".join(actual.split()):
            raise PayloadError(f"{where}: text {span_text!r} does not match the task text at {start}-{end} "
                               f"({actual!r})")
        if not actual.strip():
            raise PayloadError(f"{where}: the span {start}-{end} is blank")
        return actual

    def _from_data(self, mentions, text: str, task_id, doc, where: str) -> list[Span]:
        if not isinstance(mentions, list):
            raise PayloadError(f"{where}: expected a list of {{start, end, label}} objects")
        spans = []
        for j, m in enumerate(mentions):
            here = f"{where}[{j}]"
            if not isinstance(m, dict):
                raise PayloadError(f"{here}: expected an object with start, end, label")
            label = m.get("label")
            if not isinstance(label, str) or not label:
                raise PayloadError(f"{here}.label: expected a label such as ENFERMEDAD")
            actual = self._check(here, m.get("start"), m.get("end"), text, m.get("text"))
            if label not in self.config.labels:
                continue
            region_id = str(m.get("id") or _region_id(task_id, doc, m["start"], m["end"], label))
            spans.append(Span(region_id, m["start"], m["end"], actual, label, emit_label=True))
        return spans

    def _from_regions(self, regions: list[Region], text: str, where: str, emit_label: bool) -> list[Span]:
        spans = []
        for region in regions:
            if region.label not in self.config.labels:
                continue
            actual = self._check(f"{where} region {region.id}", region.start, region.end, text, region.text)
            spans.append(Span(region.id, region.start, region.end, actual, region.label, emit_label))
        return spans

    # --- results ------------------------------------------------------------------------------

    def _prediction(self, task, spans: list[Span], candidates, cfg: LabelConfig, model_version: str) -> dict:
        now = round(time.time(), 3)
        result = []
        nodes = []
        for span, cands in zip(spans, candidates):
            node = mention_node(span.text, span.start, span.end, span.label)
            top = cands[0] if cands else None
            top_leaf = leaf_of(top.to_dict()) if top else None
            sure = certainty(cands)
            base = {"id": span.region_id, "to_name": cfg.text_name}
            value = {"start": span.start, "end": span.end, "text": span.text}
            if span.emit_label:
                result.append({**base, "from_name": cfg.labels_name, "type": "labels",
                               "value": {**value, "labels": [span.label]},
                               "score": sure})
            if cfg.taxonomy_name and top:
                result.append({**base, "from_name": cfg.taxonomy_name, "type": "taxonomy",
                               "value": {**value, "taxonomy": [[node, top_leaf]]},
                               "score": sure})
            elif cfg.textarea_name and top:  # no candidate picker in this config: the code field gets top-1
                result.append({**base, "from_name": cfg.textarea_name, "type": "textarea",
                               "value": {**value, "text": [f"{top.code} | {top.preferred_term}"]},
                               "score": sure})
            if cfg.relation_name and top:
                result.append({**base, "from_name": cfg.relation_name, "type": "choices",
                               "value": {**value, "choices": ["EXACT"]}})
            nodes.append({"node": node, "label": span.label, "start": span.start, "end": span.end, "stored": now,
                          "candidates": [c.to_dict() for c in cands]})
        # a task is as certain as its spans on average (the mean ranks tasks by their share of wrong top-1s far
        # better than the least certain span: bench/quality.py calibration)
        scores = [certainty(c) for c in candidates]
        return {"model_version": model_version, "score": round(sum(scores) / len(scores), 6) if scores else 0.0,
                "result": result}, nodes

    def _doc_key(self, task, cfg: LabelConfig) -> str:
        data = task.get("data") or {}
        field = cfg.doc_param or self.config.doc_field
        value = data.get(field)
        return str(value) if value not in (None, "") else f"task-{task.get('id')}"

    # --- the candidate picker -----------------------------------------------------------------

    def taxonomy(self, doc: str, path: str | None = None, project: str | None = None) -> list[dict]:
        """Taxonomy items for a document: one node per mention, its candidates as leaves, then NO_CODE; last, a
        node whose children Label Studio loads only when the coder opens it (`path`): the mentions drawn since.

        Label Studio fetches the list once, when the task opens, and each lazy node once, when first opened: the
        mentions a coder draws afterwards reach the picker through that node, which ends with another such node
        for the mentions drawn after that.
        """
        stored = self.store.get_candidates(project, doc) if self.store is not None else []
        since = _since(path) if path else None
        if path and since is None:
            raise PayloadError(f"path: {path[:80]!r} is not a node this backend serves lazily")
        mentions = [m for m in stored if since is None or m.get("stored", 0) > since]
        if not stored:
            return [{"value": "(sin candidatos: use «Retrieve predictions» para este documento)", "isLeaf": True},
                    _later(0.0)]
        items = []
        for mention in sorted(mentions, key=lambda m: (m.get("start", 0), m.get("end", 0))):
            children = [{"value": leaf_of(c), "isLeaf": True, "hint": _hint(c)} for c in mention["candidates"]]
            children.append({"value": NO_CODE_LEAF, "isLeaf": True, "hint": "ningún concepto aplica"})
            hint = mention.get("label", "")
            if len(mention["candidates"]) < self.config.top_k:
                hint += (f" · {len(mention['candidates'])} candidatos con evidencia (de {self.config.top_k}): "
                         "ningún otro concepto se parece a la mención")
            items.append({"value": mention["node"], "isLeaf": False, "hint": hint, "children": children})
        newest = max([m.get("stored", 0.0) for m in stored] + [since or 0.0])
        return items + [_later(newest)]

    def search(self, query: str, k: int = 25, label: str | None = None, project: str | None = None) -> list[dict]:
        """Search the knowledge base (codes outside a mention's top 25): the label's part when a label is given."""
        query = " ".join(query.split())
        if not query:
            return []
        serving = self.serving
        self.sync_learned(serving)
        kb = serving.linker.kb
        concept = kb.get(query)
        found = [c.to_dict() for c in serving.linker.link([query], k, labels=[label],
                                                          learned=self.learned_for(project, serving))[0]]
        if concept is not None:  # a typed code finds its concept first
            exact = {"code": concept.code, "preferred_term": concept.preferred_term,
                     "matched_term": concept.preferred_term, "semantic_tag": concept.semantic_tag, "score": 1.0,
                     "rank": 0, "evidence": "code", "via": "",
                     "parents": [{"code": c, "term": t} for c, t in kb.parent_terms(concept.code)]}
            found = [exact] + [c for c in found if c["code"] != concept.code]
        return found


LATER_NODE = "+ Menciones dibujadas después de abrir la tarea (despliegue para ver sus candidatos)"
_LATER = re.compile(r"·t([0-9a-z]+)\s*$")


def _later(since: float) -> dict:
    """The lazy node of the mentions stored after `since` (its value carries the time, base 36 milliseconds)."""
    return {"value": f"{LATER_NODE} ·t{_base36(int(since * 1000))}", "isLeaf": False,
            "hint": "las menciones que dibuje con Auto-Annotation activado aparecen aquí al desplegar, con todos sus "
                    "candidatos"}


def _since(path: str) -> float | None:
    match = _LATER.search(path)  # the node's value ends with its time, however Label Studio joins a path
    return int(match.group(1), 36) / 1000 if match else None


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


EVIDENCE_WORDS = {"lexical": "parecido de letras", "dense": "parecido semántico", "hybrid": "parecido (híbrido)",
                  "learned": "aceptado antes por codificadores", "hierarchy": "por jerarquía", "code": "código exacto"}


def _hint(candidate: dict) -> str:
    tag = candidate["semantic_tag"] or "sin etiqueta semántica"
    hint = f"{tag} · score {candidate['score']:.3f} · #{candidate['rank']}"
    evidence = candidate.get("evidence")
    if evidence:
        hint += f" · {EVIDENCE_WORDS.get(evidence, evidence)}"
    if candidate.get("via"):
        hint += f" ({candidate['via']})"
    if candidate.get("matched_term") and candidate["matched_term"] != candidate["preferred_term"]:
        hint += f" · «{candidate['matched_term']}»"
    return hint


def _region_id(task_id, doc, start: int, end: int, label: str) -> str:
    return hashlib.sha1(f"{task_id}:{doc}:{start}:{end}:{label}".encode()).hexdigest()[:10]
