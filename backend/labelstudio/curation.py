"""Gold-standard curation from a Label Studio project: agreement between coders, adjudication, and what the
assistant is worth (`clinlinker curate`).

Reads Label Studio's full JSON export (a file, or pulled from the server with the project's predictions and users)
and keeps every non-cancelled annotation of every task: one per coder when the project has overlap. Drafts are
counted, never used. What cannot be read is reported with its task and region, never guessed: a task without text,
a region without a code, a candidate ticked under another mention, a code that is not in the knowledge base.

- Agreement: `clinlinker.evaluate.agreement` on the coders' codings (spans by offsets, labels, codes, family through the
  hierarchy, Cohen's and Fleiss' kappa, every disagreement).
- Adjudication: per task, the annotation Label Studio marks as ground truth; else a policy: `newest`, `coder:NAME`
  (that coder's annotation, else the newest, said so), or `majority` (per span, the label and code a strict majority of
  the task's annotations gave; a span fewer than half of them marked is left out; any other span without a majority
  coding is left out and listed as unresolved, for the adjudicator).
- The assistant's effect: for each coded span that had a prediction, whether the coder kept the pre-selected top-1,
  where the accepted code sat in the candidate list (top 5, top 25, outside; from an index when given), the
  prediction's certainty, and the time spent (Label Studio's `lead_time` of the annotation, per span).
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from clinlinker.evaluate.agreement import Coded, Coding
from clinlinker.errors import ClinlinkerError
from clinlinker.links import Link

from backend.labelstudio.export import Problem, _filename, annotation_links
from backend.labelstudio.api import LabelStudio
from backend.labelstudio.regions import code_of, group_regions, result_problem

CERTAINTY_BANDS = ((0.0, 0.5, "low (< 0.5)"), (0.5, 0.8, "medium (0.5-0.8)"), (0.8, 1.01, "high (>= 0.8)"))
RANK_BANDS = ("top-1", "top 2-5", "top 6-25", "outside the list", "not compared")


@dataclass
class Annotation:
    task: object
    doc: str
    id: object
    coder: str
    ground_truth: bool
    created_at: str
    updated_at: str
    lead_time: float | None
    from_prediction: bool  # started from a pre-annotation (Label Studio's parent_prediction, or prediction origins)
    links: list[dict]
    predicted: dict = field(default_factory=dict)  # (start, end) -> (top-1 code, certainty) of the prediction


@dataclass
class Curation:
    annotations: list[Annotation]
    problems: list[Problem]
    counts: dict
    texts: dict  # task id -> its text

    def coded(self) -> list[Coded]:
        return [Coded(a.doc, a.coder, [Coding(l["start"], l["end"], l["label"], l["code"], l["span"]) for l in a.links])
                for a in self.annotations]


def _coder(value, users: dict) -> str:
    if isinstance(value, dict):
        return str(value.get("email") or users.get(value.get("id")) or f"user {value.get('id')}")
    return str(users.get(value) or f"user {value}")


def _prediction_regions(prediction: dict) -> dict:
    """(start, end) -> (pre-selected code, certainty) of a prediction's regions."""
    scores = {}
    for item in prediction.get("result") or []:
        if isinstance(item, dict) and isinstance(item.get("value"), dict) and isinstance(item.get("score"), (int, float)):
            scores.setdefault(str(item.get("id")), float(item["score"]))
    out = {}
    for region in group_regions(prediction.get("result") or []):
        if region.start is None:
            continue
        code = None
        if region.taxonomy and len(region.taxonomy[0]) >= 2:
            code = code_of(region.taxonomy[0][-1])
        elif region.typed:
            code = code_of(region.typed[0])
        elif region.picked:
            code = code_of(region.picked[0])
        if code:
            out[(region.start, region.end)] = (code, scores.get(region.id))
    return out


def read_curation(tasks, *, doc_field: str = "doc_id", text_field: str = "text", users: dict | None = None,
                  kb=None) -> Curation:
    """Every non-cancelled annotation of a full JSON export, with what could not be read."""
    if isinstance(tasks, dict) and "annotations" in tasks:
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise ClinlinkerError("a Label Studio JSON export is a list of tasks (use export type JSON, not JSON_MIN)")
    users = users or {}
    annotations, problems, texts = [], [], {}
    counts = Counter()
    for position, task in enumerate(tasks):
        if not isinstance(task, dict):
            problems.append(Problem(f"#{position + 1}", None, "not a task object"))
            continue
        counts["tasks"] += 1
        counts["drafts"] += len(task.get("drafts") or [])
        data = task.get("data") if isinstance(task.get("data"), dict) else {}
        if not isinstance(task.get("annotations", []), list):
            problems.append(Problem(task.get("id"), None, "annotations: expected a list"))
            continue
        text = data.get(text_field)
        if not isinstance(text, str) or not text:
            problems.append(Problem(task.get("id"), None, f"task has no text (data.{text_field}): its annotations "
                                                          "are not used"))
            continue
        texts[task.get("id")] = text
        predictions = {p.get("id"): p for p in task.get("predictions") or [] if isinstance(p, dict)}
        latest = max(predictions.values(), key=lambda p: (str(p.get("created_at") or ""), p.get("id") or 0),
                     default=None)
        for annotation in task.get("annotations") or []:
            if not isinstance(annotation, dict):
                problems.append(Problem(task.get("id"), None, "an annotation that is not an object"))
                continue
            if annotation.get("was_cancelled"):
                counts["cancelled"] += 1
                continue
            where = f"annotation {annotation.get('id')}"
            unreadable = result_problem(annotation.get("result"), "result")
            if unreadable:
                problems.append(Problem(task.get("id"), None, f"{where}: {unreadable}; not used"))
                continue
            counts["annotations"] += 1
            counts["relations"] += sum(1 for item in annotation.get("result") or []
                                       if isinstance(item, dict) and item.get("type") == "relation")
            links, found = annotation_links(task, annotation, doc_field=doc_field)
            problems.extend(Problem(p.task, p.region, f"{where}: {p.message}") for p in found)
            if kb is not None:
                kept = []
                for link in links:
                    unknown = [c for c in link["code"].split("+") if c != "NO_CODE" and c not in kb]
                    if unknown:
                        problems.append(Problem(task.get("id"), link["region"], f"{where}: code {'+'.join(unknown)} "
                                                f"of span {link['span']!r} is not in the knowledge base"))
                    else:
                        kept.append(link)
                links = kept
            parent = annotation.get("parent_prediction")
            prediction = predictions.get(parent) if parent is not None else latest
            origins = {l["origin"] for l in links}
            lead = annotation.get("lead_time")
            annotations.append(Annotation(
                task=task.get("id"), doc=links[0]["filename"] if links else _filename(task, doc_field),
                id=annotation.get("id"), coder=_coder(annotation.get("completed_by"), users),
                ground_truth=bool(annotation.get("ground_truth")),
                created_at=str(annotation.get("created_at") or ""), updated_at=str(annotation.get("updated_at") or ""),
                lead_time=float(lead) if isinstance(lead, (int, float)) and lead > 0 else None,
                from_prediction=parent is not None or bool(origins & {"prediction", "prediction-changed"}),
                links=links, predicted=_prediction_regions(prediction) if prediction else {}))
    return Curation(annotations, problems, dict(counts), texts)


# --- adjudication -------------------------------------------------------------------------------------------------

def adjudicate(curation: Curation, policy: str = "majority") -> dict:
    """The gold standard: per task, the ground-truth annotation, else `policy`. Returns {"links": [Link],
    "decisions": [{task, doc, source, annotation, coder}], "unresolved": [{task, doc, start, end, span, codings}]}."""
    if policy not in ("newest", "majority") and not policy.startswith("coder:"):
        raise ClinlinkerError(f"unknown adjudication policy {policy!r}: use newest, majority or coder:NAME")
    by_task: dict = defaultdict(list)
    for a in curation.annotations:
        by_task[a.task].append(a)
    rows, decisions, unresolved = [], [], []
    for task, given in by_task.items():
        newest = max(given, key=lambda a: (a.updated_at or a.created_at, str(a.id)))
        truth = [a for a in given if a.ground_truth]
        chosen, source = None, None
        if truth:
            chosen = max(truth, key=lambda a: (a.updated_at or a.created_at, str(a.id)))
            source = "ground truth" + (f" (newest of {len(truth)} marked)" if len(truth) > 1 else "")
        elif policy == "newest" or len(given) == 1:
            chosen, source = newest, "newest" if len(given) > 1 else "only annotation"
        elif policy.startswith("coder:"):
            name = policy.split(":", 1)[1]
            mine = [a for a in given if a.coder == name]
            chosen = max(mine, key=lambda a: (a.updated_at or a.created_at, str(a.id))) if mine else newest
            source = f"coder {name}" if mine else f"newest (no annotation by {name})"
        if chosen is not None:
            links = chosen.links
            decisions.append({"task": task, "doc": chosen.doc, "source": source, "annotation": chosen.id,
                              "coder": chosen.coder})
        else:  # majority, per span
            votes: dict = defaultdict(Counter)
            spans: dict = {}
            for a in given:
                for l in a.links:
                    votes[(l["start"], l["end"])][(l["label"], l["code"], l["semantic_rel"])] += 1
                    spans[(l["start"], l["end"])] = l
            links = []
            for offsets in sorted(votes):
                (label, code, rel), n = votes[offsets].most_common(1)[0]
                if 2 * n > len(given):
                    links.append({**spans[offsets], "label": label, "code": code, "semantic_rel": rel})
                elif 2 * sum(votes[offsets].values()) >= len(given):  # a span for half or more: undecided
                    unresolved.append({"task": task, "doc": given[0].doc, "start": offsets[0],
                                       "end": offsets[1], "span": spans[offsets]["span"],
                                       "codings": {a.coder: next((f"{l['label']} {l['code']}" for l in a.links
                                                                  if (l["start"], l["end"]) == offsets), None)
                                                   for a in given}})
            decisions.append({"task": task, "doc": given[0].doc, "source": f"majority of {len(given)}",
                              "annotation": None, "coder": None})
        for mark, l in enumerate(sorted(links, key=lambda l: (l["start"], l["end"])), start=1):
            rows.append(Link(l["filename"], f"T{mark}", l["label"], l["start"], l["end"], l["span"], l["code"],
                             l["semantic_rel"]))
    return {"links": rows, "decisions": decisions, "unresolved": unresolved}


def write_disagreements(rows: list[dict], task_of_doc: dict, path) -> None:
    """The disagreements as a TSV an adjudicator walks: task, document, offsets, span, kind, each coder's coding."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("task\tfilename\tstart\tend\tspan\tkind\tcodings\n")
        for r in rows:
            codings = "; ".join(f"{coder}: {c['label']} {c['code']}" if c else f"{coder}: (not marked)"
                                for coder, c in r["codings"].items())
            span = " ".join(str(r["span"]).split())
            out.write(f"{task_of_doc.get(r['doc'], '')}\t{r['doc']}\t{r['start']}\t{r['end']}\t{span}\t{r['kind']}\t"
                      f"{codings}\n")


# --- the assistant's effect ---------------------------------------------------------------------------------------

def _band(value, bands=CERTAINTY_BANDS) -> str | None:
    if value is None:
        return None
    return next((name for lo, hi, name in bands if lo <= value < hi), None)


def assistant_effect(curation: Curation, linker=None, k: int = 25, gold: list[Link] | None = None) -> dict:
    """Per coded span with a prediction: kept top-1, rank band of the accepted code, certainty; time per span."""
    spans = []
    gold_codes = {(g.filename, g.start, g.end): g.code for g in gold or []}
    wanted = []
    for a in curation.annotations:
        for l in a.links:
            predicted = a.predicted.get((l["start"], l["end"]))
            spans.append({"coder": a.coder, "label": l["label"], "day": (a.created_at or "")[:10], "code": l["code"],
                          "top1": predicted[0] if predicted else None, "certainty": predicted[1] if predicted else None,
                          "doc": a.doc, "task": a.task, "start": l["start"], "end": l["end"], "span": l["span"],
                          "from_prediction": a.from_prediction})
            if predicted and linker is not None and predicted[0] != l["code"]:
                wanted.append((l["span"], l["label"], a.task))
    ranks = {}
    if linker is not None and wanted:
        # each span with its own case's text, as the backend searched it (the acronyms the case defines)
        unique = list(dict.fromkeys(wanted))
        lists = linker.link([m for m, _, _ in unique], k, labels=[lab for _, lab, _ in unique],
                            contexts=[curation.texts.get(task) for _, _, task in unique])
        ranks = {key: [c.code for c in cands] for key, cands in zip(unique, lists)}
    for s in spans:
        if s["top1"] is None:
            s["rank"] = "not compared"
        elif s["top1"] == s["code"]:
            s["rank"] = "top-1"
        elif linker is None:
            s["rank"] = "not top-1"
        else:
            codes = ranks.get((s["span"], s["label"], s["task"]), [])
            r = codes.index(s["code"]) + 1 if s["code"] in codes else None
            s["rank"] = "top 2-5" if r and r <= 5 else "top 6-25" if r else "outside the list"
        s["gold"] = gold_codes.get((s["doc"], s["start"], s["end"]))

    def shares(group):
        n = len(group)
        c = Counter(s["rank"] for s in group)
        return {"spans": n, **{band: c[band] for band in (*RANK_BANDS, "not top-1") if c[band]}}

    by_coder = defaultdict(list)
    by_label = defaultdict(list)
    by_day = defaultdict(list)
    for s in spans:
        by_coder[s["coder"]].append(s)
        by_label[s["label"]].append(s)
        by_day[(s["coder"], s["day"])].append(s)
    # overrides of the pre-selected top-1, by its certainty; where a gold standard exists, how often a kept top-1
    # was wrong (the sign of automation bias) and how often an override was right
    override = {}
    for lo, hi, band in CERTAINTY_BANDS:
        group = [s for s in spans if s["top1"] is not None and s["certainty"] is not None and lo <= s["certainty"] < hi]
        kept = [s for s in group if s["code"] == s["top1"]]
        judged = [s for s in kept if s["gold"] is not None]
        changed = [s for s in group if s["code"] != s["top1"] and s["gold"] is not None]
        override[band] = {"spans": len(group), "overridden": len(group) - len(kept),
                          "override_rate": round((len(group) - len(kept)) / len(group), 4) if group else None,
                          "kept_but_gold_differs": sum(s["gold"] != s["code"] for s in judged),
                          "kept_judged": len(judged),
                          "overrides_right": sum(s["gold"] == s["code"] for s in changed),
                          "overrides_judged": len(changed)}
    # time per span (an annotation's lead_time shared by its spans), with and without a prediction, by certainty
    timing = defaultdict(list)
    for a in curation.annotations:
        if a.lead_time is None or not a.links:
            continue
        per_span = a.lead_time / len(a.links)
        timing[("with a prediction" if a.from_prediction else "without a prediction", a.coder)].append(per_span)
        timing[("with a prediction" if a.from_prediction else "without a prediction", "all")].append(per_span)
        certainties = [a.predicted[(l["start"], l["end"])][1] for l in a.links
                       if (l["start"], l["end"]) in a.predicted and a.predicted[(l["start"], l["end"])][1] is not None]
        if a.from_prediction and certainties:
            timing[(f"certainty {_band(statistics.mean(certainties))}", "all")].append(per_span)
    return {
        "spans": len(spans),
        "by_coder": {c: shares(g) for c, g in sorted(by_coder.items())},
        "by_label": {l: shares(g) for l, g in sorted(by_label.items())},
        "by_day": [{"coder": c, "day": d, **shares(g)} for (c, d), g in sorted(by_day.items())],
        "overrides": override,
        "seconds_per_span": [{"group": g, "coder": c, "annotations": len(v), "median": round(statistics.median(v), 2)}
                             for (g, c), v in sorted(timing.items())],
        "ranks_from": "an index (the candidate list as that index gives it now)" if linker is not None else
                      "the pre-annotation only (top-1 or not; give --index for top-5/top-25)",
    }


# --- the report -----------------------------------------------------------------------------------------------------

def _plot(draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    try:
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p class=none>none</p>"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))

    def cell(v):
        if v is None:
            return "<td class=none>–</td>"
        if isinstance(v, float):
            return f"<td class=num>{v:.3f}</td>"
        if isinstance(v, int):
            return f"<td class=num>{v}</td>"
        return f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(r.get(c)) for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _counts_table(key: str, groups: dict, day: bool = False) -> str:
    """Rank-band counts per group: a band no span of a group fell in is 0, not blank."""
    bands = [b for b in (*RANK_BANDS, "not top-1") if any(f.get(b) for f in groups.values())]
    rows = []
    for name, f in groups.items():
        row = {key: name[0], "day": name[1]} if day else {key: name}
        rows.append({**row, "spans": f["spans"], **{b: f.get(b, 0) for b in bands}})
    return _table(rows, [key, *(["day"] if day else []), "spans", *bands])


FIGURE_COLUMNS = ["documents", "spans_a", "spans_b", "span_f1", "span_label_f1", "label_agreement", "label_kappa",
                  "code_compared", "code_exact", "code_family", "code_kappa"]


def report_html(title: str, curation: Curation, agree: dict, effect: dict, adjudication: dict) -> str:
    overall = agree["overall"]
    labels = agree["labels"]
    parts = [f"<h1>{html.escape(title)}</h1>",
             "<p>" + ", ".join(f"{v} {k}" for k, v in sorted(curation.counts.items())) +
             f"; {len(curation.problems)} problem(s) reported; coders: " +
             ", ".join(f"{html.escape(c)} ({n} documents)" for c, n in agree["coded_documents"].items()) + "</p>",
             "<h2>Agreement between coders</h2>",
             "<p>Spans match on equal offsets; codes are compared on spans both coders marked with the same label; "
             "<em>family</em> counts a parent or child concept as agreeing. Kappa does not apply to span presence "
             "(F1 instead).</p>",
             _table([{"pair": "all pairs", **overall}], ["pair", *FIGURE_COLUMNS]),
             "<h3>Per coder pair</h3>",
             _table([{"pair": f"{p['a']} / {p['b']}", **p} for p in agree["pairs"]], ["pair", *FIGURE_COLUMNS]),
             "<h3>Per label</h3>",
             _table([{"label": l, **f} for l, f in labels.items()],
                    ["label", "documents", "spans_a", "spans_b", "span_f1", "code_compared", "code_exact",
                     "code_family", "code_kappa"])]
    if labels:
        names = list(labels)

        def draw_agreement(ax):
            xs = range(len(names))
            ax.bar([x - 0.2 for x in xs], [labels[n]["code_exact"] or 0 for n in names], 0.4, label="exact code")
            ax.bar([x + 0.2 for x in xs], [labels[n]["code_family"] or 0 for n in names], 0.4, label="same family")
            ax.set_xticks(list(xs), names)
            ax.set_ylim(0, 1)
            ax.set_ylabel("code agreement")
            ax.legend(loc="lower right")
        parts.append(_plot(draw_agreement))
    if agree["fleiss_code_kappa"]:
        parts.append("<p>Fleiss' kappa over codes (spans every coder of a document marked with the same label): " +
                     "; ".join(f"{n} coders: {f['kappa']} over {f['items']} spans"
                               for n, f in agree["fleiss_code_kappa"].items()) + "</p>")
    parts += [f"<h2>Disagreements ({len(agree['disagreements'])})</h2>",
              _table([{"document": d["doc"], "start": d["start"], "end": d["end"], "span": d["span"], "kind": d["kind"],
                       "codings": "; ".join(f"{c}: {v['label']} {v['code']}" if v else f"{c}: not marked"
                                            for c, v in d["codings"].items())} for d in agree["disagreements"]]),
              "<h2>Adjudicated gold standard</h2>",
              f"<p>{len(adjudication['links'])} links from {len(adjudication['decisions'])} tasks; "
              f"{len(adjudication['unresolved'])} span(s) without a majority left for the adjudicator.</p>",
              _table([{k: v for k, v in d.items()} for d in adjudication["decisions"]]),
              "<h2>What the assistant is worth</h2>",
              f"<p>{effect['spans']} coded spans; candidate ranks from {html.escape(effect['ranks_from'])}.</p>",
              "<h3>Where the accepted code was, per coder</h3>",
              _counts_table("coder", effect["by_coder"]),
              "<h3>Per label</h3>",
              _counts_table("label", effect["by_label"])]
    coders = list(effect["by_coder"])
    if coders:
        bands = [b for b in (*RANK_BANDS, "not top-1") if any(effect["by_coder"][c].get(b) for c in coders)]

        def draw_ranks(ax):
            bottom = [0.0] * len(coders)
            for band in bands:
                share = [effect["by_coder"][c].get(band, 0) / max(1, effect["by_coder"][c]["spans"]) for c in coders]
                ax.bar(coders, share, bottom=bottom, label=band)
                bottom = [b + s for b, s in zip(bottom, share)]
            ax.set_ylabel("share of coded spans")
            ax.legend(fontsize=8, loc="lower right")
        parts.append(_plot(draw_ranks))
    parts += ["<h3>Over time (per coder and day)</h3>",
              _counts_table("coder", {(r["coder"], r["day"]): r for r in effect["by_day"]}, day=True),
              "<h3>Overriding the pre-selected top-1, by its certainty</h3>",
              "<p>A coder who keeps confident top-1s that the gold standard rejects may be trusting the assistant too "
              "much (automation bias); overrides of uncertain ones are expected.</p>",
              _table([{"certainty": b, **f} for b, f in effect["overrides"].items()]),
              "<h3>Seconds per coded span (Label Studio's lead time of an annotation over its spans)</h3>",
              _table(effect["seconds_per_span"])]
    timing = [t for t in effect["seconds_per_span"] if t["coder"] == "all"]
    if timing:
        parts.append(_plot(lambda ax: (ax.barh([t["group"] for t in timing], [t["median"] for t in timing]),
                                       ax.set_xlabel("median seconds per span"))))
    parts += [f"<h2>Problems ({len(curation.problems)})</h2>",
              _table([{"task": p.task, "region": p.region, "problem": p.message} for p in curation.problems])]
    style = ("body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}table{border-collapse:collapse;"
             "margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .5em;font-size:.9em;vertical-align:top}"
             "th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}.none{color:#999}"
             "h2{border-bottom:2px solid #ddd;margin-top:1.5em}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


# --- Label Studio: users, and a review tab of the tasks in disagreement ------------------------------------------

def fetch_users(url: str, token: str, timeout: float = 60.0) -> dict:
    """User id -> email, so that the report names coders as Label Studio shows them."""
    users = LabelStudio(url, token, timeout=timeout).users()
    return {u.get("id"): u.get("email") or u.get("username") for u in users if isinstance(u, dict)}


def create_review_tab(url: str, token: str, project: int, task_ids, title: str = "clinlinker: disagreements",
                      timeout: float = 60.0) -> dict:
    """A Data Manager tab in the project that shows only the tasks in disagreement (an adjudicator opens it and
    walks them). An earlier tab of the same title is replaced."""
    ls = LabelStudio(url, token, timeout=timeout)
    for view in ls.views(project):
        if (view.get("data") or {}).get("title") == title:
            ls.delete_view(view["id"])
    ids = sorted({int(t) for t in task_ids})
    items = [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": t} for t in ids]
    if not items:  # a tab that shows nothing, rather than every task
        items = [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": -1}]
    view = ls.create_view(project, {"title": title, "filters": {"conjunction": "or", "items": items}})
    base = url.rstrip("/")
    return {"id": view.get("id"), "tasks": len(ids), "url": f"{base}/projects/{int(project)}/data?tab={view.get('id')}"}
